"""Supervised fine-tuning (InstructGPT's step 1) of a policy on the demonstrations of export files with TRL's
SFTTrainer, its evaluation and its output folder.

A demonstration is an accepted assistant reply with the conversation above it: every message on its path is accepted
by review (``review_result`` true), not deleted, not synthetic. At each prompter message only the best-ranked such
reply is followed (a ranked reply before an unranked one), as Open-Assistant's own SFT data did; ``all_paths``
follows every one. Each demonstration is one example: the prompt is ``chat_prompt`` of the conversation before the
reply (the words PPO, DPO and sampling use), the completion the reply and EOS, and only the completion carries labels.
A conversation with two assistant turns gives two examples, so every chosen assistant turn is learnt once.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from training.data import Turn, read_messages, split_prompts_by_tree
from training.dpo import completion_text
from training.outputs import (
    code_version,
    export_manifest,
    manifest_and_hyperparameters_markdown,
    pyplot,
    remove_empty_checkpoints,
)
from training.pairs import data_files, source_sha256
from training.policy import chat_prompt, default_policy_path, greedy_answers, load_policy
from training.trainer_plumbing import progress_callback, quiet_libraries, trainer_arguments

IGNORED = -100  # the label of a token the loss skips (PyTorch's cross-entropy ignore_index)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


@dataclass(frozen=True)
class SFTTrainingConfig:
    data: str
    output: str
    extra_data: tuple[str, ...] = ()  # more --data files or folders after the first
    policy: str | None = None
    all_paths: bool = False
    epochs: float = 1.0
    lr: float = 2e-5
    batch_size: int = 8
    max_length: int = 512
    eval_fraction: float = 0.1
    seed: int = 42
    lora_rank: int = 0  # > 0: train a LoRA adapter of this rank, merged into the policy that is written
    lora_alpha: int = 16
    samples: int = 4  # held-out prompts answered greedily before and after training
    sample_tokens: int = 64

    def check(self) -> None:
        """A ValueError naming the first bad setting; nothing runs with one."""
        for name in ("epochs", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("batch_size", "max_length", "sample_tokens", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.lora_rank < 0 or self.samples < 0:
            raise ValueError("lora_rank and samples must not be negative")
        if not 0 < self.eval_fraction < 1:
            raise ValueError("eval_fraction must be in (0, 1): held-out trees measure the run")


@dataclass(frozen=True)
class SFTExample:
    """A demonstration: the conversation from the root prompt down to the assistant reply it ends with."""

    tree_id: str
    message_id: str
    lang: str
    conversation: tuple[Turn, ...]


def is_demonstrable(message: dict) -> bool:
    """Accepted by review, not deleted, not synthetic, with text: a message an SFT path may pass through."""
    return (
        message.get("review_result") is True
        and not message.get("deleted")
        and not message.get("synthetic")
        and bool((message.get("text") or "").strip())
    )


def _best_first(reply: dict) -> tuple:
    rank = reply.get("rank")
    return (rank is None, rank if rank is not None else 0, reply["message_id"])


def sft_examples(messages: Iterable[dict], *, all_paths: bool = False) -> list[SFTExample]:
    """One example per assistant reply on the paths from each root prompt through demonstrable messages: the
    best-ranked reply to each prompter message, or every reply with ``all_paths``; turns alternate."""
    by_id = {message["message_id"]: message for message in messages}
    children: dict[str, list[dict]] = defaultdict(list)
    for message in by_id.values():
        if message.get("parent_id"):
            children[message["parent_id"]].append(message)
    examples = []
    stack = [
        (message, message.get("message_tree_id") or message["message_id"], ()) for message in by_id.values()
        if not message.get("parent_id") and message.get("role") == "prompter" and is_demonstrable(message)
    ]
    while stack:
        message, tree_id, above = stack.pop()
        conversation = (*above, Turn(role=message["role"], text=message["text"]))
        answering = message["role"] == "prompter"
        if not answering:
            examples.append(
                SFTExample(
                    tree_id=tree_id,
                    message_id=message["message_id"],
                    lang=message.get("lang") or "und",
                    conversation=conversation,
                )
            )
        next_role = "assistant" if answering else "prompter"
        followed = sorted(
            (child for child in children[message["message_id"]] if child.get("role") == next_role
             and is_demonstrable(child)),
            key=_best_first,
        )
        if answering and not all_paths:
            followed = followed[:1]
        stack.extend((child, tree_id, conversation) for child in followed)
    examples.sort(key=lambda example: (example.tree_id, len(example.conversation), example.message_id))
    return examples


def load_sft_examples(sources: Sequence[str | Path], *, all_paths: bool = False) -> list[SFTExample]:
    """The examples of the files behind the sources; a message found in two files is read once."""
    messages = {message["message_id"]: message for path in data_files(sources) for message in read_messages(path)}
    return sft_examples(messages.values(), all_paths=all_paths)


def check_policy_folder(path: str | Path) -> None:
    """A ValueError unless the folder holds a model config and a tokenizer (the tokenizer is saved beside the
    weights, and loading one without it would reach for the hub)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"no model folder at {path} (config.json is missing)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"{path} holds no tokenizer ({', '.join(TOKENIZER_FILES)}): a policy folder needs one")


def sft_inputs(config: SFTTrainingConfig) -> tuple[str, list[SFTExample]]:
    """The policy folder and the examples, after every refusal: bad settings, a policy folder without a tokenizer,
    files without conversations to learn from. Writes nothing."""
    config.check()
    policy = str(config.policy or default_policy_path())
    check_policy_folder(policy)
    sources = [config.data, *config.extra_data]
    examples = load_sft_examples(sources, all_paths=config.all_paths)
    if not examples:
        raise ValueError(
            f"{', '.join(map(str, sources))} holds no conversations to learn from: no accepted (review_result true), "
            "non-deleted, non-synthetic assistant reply under an accepted prompt"
        )
    if len({example.tree_id for example in examples}) < 2:
        raise ValueError("SFT needs conversations in at least two trees: one is held out to measure the run")
    return policy, examples


def sft_features(tokenizer, example: SFTExample, *, max_length: int) -> dict | None:
    """``input_ids`` and ``labels`` of an example: the prompt tokens exactly as sampling puts them, then the reply and
    EOS, which alone carry labels; the first ``max_length`` tokens, or None when the prompt fills them."""
    prompt = chat_prompt(tokenizer, example.conversation[:-1])
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply = completion_text(prompt, example.conversation[-1].text, "")
    completion_ids = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt_ids) >= max_length:
        return None
    return {
        "input_ids": (prompt_ids + completion_ids)[:max_length],
        "labels": ([IGNORED] * len(prompt_ids) + completion_ids)[:max_length],
    }


def assistant_token_loss(model, collator, rows: Sequence[dict], *, batch_size: int = 8) -> dict:
    """Mean negative log-likelihood of the labelled (assistant) tokens over all rows, weighted by token, and its
    perplexity."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = collator([{"input_ids": row["input_ids"], "labels": row["labels"]} for row in chunk])
            count = int((batch["labels"][:, 1:] != IGNORED).sum())
            output = model(**{key: value.to(device) for key, value in batch.items()})
            total += float(output.loss) * count
            tokens += count
    loss = total / tokens
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens}


def greedy_texts(model, tokenizer, examples: Sequence[SFTExample], config: SFTTrainingConfig) -> list[str]:
    """The policy's greedy reply to the conversation before each example's reply."""
    conversations = [example.conversation[:-1] for example in examples]
    answers = greedy_answers(
        model, tokenizer, conversations, max_new_tokens=config.sample_tokens, batch_size=config.batch_size
    )
    return [answer.text for answer in answers]


def sample_examples(examples: Sequence[SFTExample], tokenizer, config: SFTTrainingConfig) -> list[SFTExample]:
    """The first ``config.samples`` held-out examples with distinct prompts that leave room for the reply."""
    chosen: list[SFTExample] = []
    prompts: set[tuple[Turn, ...]] = set()
    for example in examples:
        if len(chosen) == config.samples:
            break
        prompt = chat_prompt(tokenizer, example.conversation[:-1])
        fits = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + config.sample_tokens <= config.max_length
        if fits and example.conversation[:-1] not in prompts:
            prompts.add(example.conversation[:-1])
            chosen.append(example)
    return chosen


def _side_stats(examples: Sequence[SFTExample], rows: Sequence[dict]) -> dict:
    return {
        "trees": len({example.tree_id for example in examples}),
        "examples": len(examples),
        "examples_used": len(rows),
        "assistant_tokens": sum(label != IGNORED for row in rows for label in row["labels"]),
    }


def _lora_config(config: SFTTrainingConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
    )


def train_sft(config: SFTTrainingConfig, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """SFT of the policy on the training trees' examples, measured on the held-out trees, and the output folder
    written; returns the final metrics."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, set_seed
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    quiet_libraries()
    started = time.monotonic()
    policy_path, examples = sft_inputs(config)
    # split_prompts_by_tree reads only tree_id: the same trees are held out as for any item with it
    train_examples, eval_examples = split_prompts_by_tree(
        examples, eval_fraction=config.eval_fraction, seed=config.seed
    )
    model, tokenizer = load_policy(policy_path)
    features = {e.message_id: sft_features(tokenizer, e, max_length=config.max_length) for e in examples}
    train_rows = [features[e.message_id] for e in train_examples if features[e.message_id] is not None]
    eval_rows = [features[e.message_id] for e in eval_examples if features[e.message_id] is not None]
    if not train_rows or not eval_rows:
        raise ValueError(f"every training or every held-out prompt fills --max-length {config.max_length}")

    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    use_cuda = torch.cuda.is_available()
    model.to("cuda" if use_cuda else "cpu")
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    shown = sample_examples(eval_examples, tokenizer, config)
    before = assistant_token_loss(model, collator, eval_rows, batch_size=config.batch_size)
    replies_before = greedy_texts(model, tokenizer, shown, config)

    args = SFTConfig(**trainer_arguments(config, output, train_items=len(train_rows), evaluate=True))
    trainer = SFTTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        data_collator=collator,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows),
        peft_config=_lora_config(config) if config.lora_rank else None,
        callbacks=[progress_callback(progress)] if progress else None,
    )
    trainer.remove_callback(PrinterCallback)
    trainable = sum(parameter.numel() for parameter in trainer.model.parameters() if parameter.requires_grad)
    train_started = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - train_started

    policy = trainer.model.merge_and_unload() if config.lora_rank else trainer.model
    after = assistant_token_loss(policy, collator, eval_rows, batch_size=config.batch_size)
    replies_after = greedy_texts(policy, tokenizer, shown, config)
    policy.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    remove_empty_checkpoints(output / "checkpoints")

    files = data_files([config.data, *config.extra_data])
    metrics = {
        "config": {**asdict(config), "policy": policy_path},
        "data": {
            "file": str(Path(config.data).resolve()),
            "sha256": source_sha256(config.data),
            "files": [{"path": str(path.resolve()), "sha256": source_sha256(path)} for path in files],
            "train": _side_stats(train_examples, train_rows),
            "eval": _side_stats(eval_examples, eval_rows),
        },
        "code_version": code_version(),
        "device": "cuda" if use_cuda else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "parameters": sum(parameter.numel() for parameter in policy.parameters()),
        "trainable_parameters": trainable,
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "train_examples_per_second": round(len(train_rows) * config.epochs / train_seconds, 2),
        "held_out_loss": {"before": before, "after": after},
        "steps": trainer.state.log_history,
    }
    samples = [
        {
            "tree_id": example.tree_id,
            "message_id": example.message_id,
            "prompt": example.conversation[-2].text,
            "reference": example.conversation[-1].text,
            "before": reply_before,
            "after": reply_after,
        }
        for example, reply_before, reply_after in zip(shown, replies_before, replies_after, strict=True)
    ]
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (output / "samples.json").write_text(json.dumps(samples, indent=2, ensure_ascii=False))
    _plot_sft_curve(metrics, output / "training_curve.png")
    _write_samples_markdown(samples, output / "samples.md")
    _write_sft_card(metrics, output / "README.md", export_manifest=export_manifest(config.data))
    return metrics


def _plot_sft_curve(metrics: dict, path: Path) -> None:
    """Training loss per logged step; held-out assistant-token loss before training, at each epoch, after."""
    plt = pyplot()
    history = metrics["steps"]
    last_step = max((row["step"] for row in history), default=0)
    train = [(row["step"], row["loss"]) for row in history if "loss" in row]
    held_out = [(0, metrics["held_out_loss"]["before"]["loss"])]
    held_out += [(row["step"], row["eval_loss"]) for row in history if "eval_loss" in row]
    held_out.append((last_step, metrics["held_out_loss"]["after"]["loss"]))
    figure, axis = plt.subplots(figsize=(7, 4))
    if train:
        axis.plot(*zip(*train, strict=True), label="training loss")
    axis.plot(*zip(*held_out, strict=True), "o-", label="held-out loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss per assistant token (nats)")
    axis.set_title("SFT")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _one_line(text: str, limit: int = 500) -> str:
    return text.replace("\n", " ")[:limit]


def _write_samples_markdown(samples: list[dict], path: Path) -> None:
    lines = ["# Held-out prompts answered before and after SFT", "", "Greedy replies; reference: the export's.", ""]
    for sample in samples:
        lines += [
            f"## {sample['message_id']}",
            "",
            f"**Prompt:** {_one_line(sample['prompt'])}",
            "",
            f"**Reference:** {_one_line(sample['reference'])}",
            "",
            f"**Before:** {_one_line(sample['before'])}",
            "",
            f"**After:** {_one_line(sample['after'])}",
            "",
        ]
    path.write_text("\n".join(lines))


def _write_sft_card(metrics: dict, path: Path, *, export_manifest: dict | None) -> None:
    config, data = metrics["config"], metrics["data"]
    before, after = metrics["held_out_loss"]["before"], metrics["held_out_loss"]["after"]
    paths = "every accepted reply" if config["all_paths"] else "the best-ranked accepted reply at each assistant turn"
    lines = [
        "# SFT policy",
        "",
        f"`{config['policy']}` fine-tuned with TRL's SFTTrainer on the demonstrations of an oasst export: the",
        f"conversation paths through accepted, non-deleted, non-synthetic messages, following {paths}.",
        "The prompt is `training.policy.chat_prompt` of the conversation; the loss is on the reply and EOS only.",
        "",
        "## Data",
        "",
    ]
    lines += [f"- file `{row['path']}`, sha256 `{row['sha256']}`" for row in data["files"]]
    for side, label in (("train", "training"), ("eval", "held-out")):
        stats = data[side]
        lines.append(
            f"- {label} trees / examples / used (prompt shorter than max_length) / assistant tokens: "
            f"{stats['trees']} / {stats['examples']} / {stats['examples_used']} / {stats['assistant_tokens']}"
        )
    lines += manifest_and_hyperparameters_markdown(export_manifest, config)
    lines += [
        "",
        "## Held-out assistant tokens",
        "",
        "| | loss (nats per token) | perplexity |",
        "| --- | --- | --- |",
        f"| before | {before['loss']:.3f} | {before['perplexity']:.2f} |",
        f"| after | {after['loss']:.3f} | {after['perplexity']:.2f} |",
        "",
        f"{after['tokens']} assistant tokens of {data['eval']['examples_used']} held-out examples. Trained in "
        f"{metrics['train_seconds']} s on {metrics['device']} ({metrics['trainable_parameters']:,} of "
        f"{metrics['parameters']:,} parameters trained), code version "
        f"`{metrics['code_version'] or 'unknown (no git)'}`.",
        "",
        "![training curve](training_curve.png)",
        "",
        "Samples before and after: `samples.md` (and `samples.json`).",
        "",
    ]
    path.write_text("\n".join(lines))
