"""DPO of a policy on the reward model's preference pairs with TRL's DPOTrainer, its evaluation and its output folder.

A pair's prompt is ``chat_prompt`` of its conversation (the words PPO and sampling use); the better-ranked reply is
``chosen``. Held-out trees are scored by the implicit reward margin
``beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)))``: a pair counts as right
when the margin is positive.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from training.data import PreferencePair, dataset_stats, file_sha256, load_groups, preference_pairs, split_by_tree
from training.evaluation import empty_evaluation, evaluate_preference_pairs
from training.outputs import (
    code_version,
    export_manifest,
    manifest_and_hyperparameters_markdown,
    pyplot,
    remove_empty_checkpoints,
)
from training.policy import chat_prompt, default_policy_path, load_policy
from training.reward_report import format_accuracy
from training.trainer_plumbing import progress_callback, quiet_libraries, trainer_arguments


@dataclass(frozen=True)
class DPOTrainingConfig:
    data: str
    output: str
    policy: str | None = None
    epochs: float = 1.0
    lr: float = 5e-6
    beta: float = 0.1
    batch_size: int = 8
    max_length: int = 512
    eval_fraction: float = 0.1
    seed: int = 42


def completion_text(prompt: str, reply: str, eos_token: str) -> str:
    """The reply as the prompt's continuation, ended by EOS (TRL adds EOS only where a completion lacks it)."""
    separator = "" if not prompt or prompt[-1].isspace() else " "
    return separator + reply + eos_token


def preference_dataset(pairs: Sequence[PreferencePair], tokenizer):
    """prompt / chosen / rejected text columns, plus each row's index in ``pairs`` (TRL may drop over-long prompts)."""
    from datasets import Dataset

    rows = []
    for index, pair in enumerate(pairs):
        prompt = chat_prompt(tokenizer, pair.conversation)
        rows.append(
            {
                "prompt": prompt,
                "chosen": completion_text(prompt, pair.chosen, tokenizer.eos_token),
                "rejected": completion_text(prompt, pair.rejected, tokenizer.eos_token),
                "pair_index": index,
            }
        )
    return Dataset.from_list(rows)


def completion_logps(model, collator, rows: Sequence[dict], *, batch_size: int = 8) -> tuple[list[float], list[float]]:
    """Summed log-probabilities of the chosen and of the rejected completion of each tokenised row.

    ``collator`` is the trainer's: the same concatenation, truncation and padding as in training.
    """
    import torch

    model.eval()
    device = next(model.parameters()).device
    chosen: list[float] = []
    rejected: list[float] = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = [
                {key: row[key] for key in ("prompt_ids", "chosen_ids", "rejected_ids")}
                for row in rows[start : start + batch_size]
            ]
            inputs = collator(batch)
            input_ids = inputs["input_ids"].to(device)
            logits = model(input_ids=input_ids, attention_mask=inputs["attention_mask"].to(device)).logits
            token_logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token_logps = token_logps.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            sums = (token_logps * inputs["completion_mask"][:, 1:].to(device)).sum(dim=1).cpu().tolist()
            chosen.extend(sums[: len(batch)])
            rejected.extend(sums[len(batch) :])
    return chosen, rejected


def _eval_summary(metrics: dict) -> dict:
    """``trainer.evaluate()`` without the ``eval_`` prefix and the timing entries."""
    skipped = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch")
    return {key.removeprefix("eval_"): value for key, value in metrics.items() if key not in skipped}


def train_dpo(config: DPOTrainingConfig, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """DPO from the policy, evaluated on held-out trees, and the output folder written; returns the final metrics."""
    import torch
    from transformers import PrinterCallback, set_seed
    from trl import DPOConfig, DPOTrainer

    quiet_libraries()

    started = time.monotonic()
    policy_path = str(config.policy or default_policy_path())
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)

    groups = load_groups(config.data)
    train_groups, eval_groups = split_by_tree(groups, eval_fraction=config.eval_fraction, seed=config.seed)
    train_pairs, eval_pairs = preference_pairs(train_groups), preference_pairs(eval_groups)
    if not train_pairs:
        raise ValueError(f"{config.data} holds no ranked replies to compare in the training trees")

    model, tokenizer = load_policy(policy_path)
    use_cuda = torch.cuda.is_available()
    args = DPOConfig(
        **trainer_arguments(config, output, train_items=len(train_pairs), evaluate=bool(eval_pairs)),
        beta=config.beta,
    )
    # no ref_model: TRL loads a frozen copy of the policy from its folder
    trainer = DPOTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=preference_dataset(train_pairs, tokenizer),
        eval_dataset=preference_dataset(eval_pairs, tokenizer) if eval_pairs else None,
        callbacks=[progress_callback(progress)] if progress else None,
    )
    trainer.remove_callback(PrinterCallback)
    if len(trainer.train_dataset) == 0:
        raise ValueError(f"every training prompt fills --max-length {config.max_length}: nothing is left to learn")

    eval_rows = list(trainer.eval_dataset) if eval_pairs else []
    scored_pairs = [eval_pairs[row["pair_index"]] for row in eval_rows]
    ref_chosen, ref_rejected = completion_logps(trainer.model, trainer.data_collator, eval_rows)
    eval_before = _eval_summary(trainer.evaluate()) if eval_rows else {}

    train_started = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - train_started

    eval_after = _eval_summary(trainer.evaluate()) if eval_rows else {}
    policy_chosen, policy_rejected = completion_logps(trainer.model, trainer.data_collator, eval_rows)
    margins = [
        config.beta * ((pc - rc) - (pr - rr))
        for pc, rc, pr, rr in zip(policy_chosen, ref_chosen, policy_rejected, ref_rejected, strict=True)
    ]
    zeros = [0.0] * len(margins)
    evaluation = evaluate_preference_pairs(scored_pairs, margins, zeros) if scored_pairs else empty_evaluation()
    evaluation["mean_margin"] = sum(margins) / len(margins) if margins else None

    trainer.save_model(str(output))
    tokenizer.save_pretrained(str(output))

    train_stats, eval_stats = dataset_stats(train_groups), dataset_stats(eval_groups)
    metrics = {
        "config": {**asdict(config), "policy": policy_path},
        "data": {
            "file": str(Path(config.data).resolve()),
            "sha256": file_sha256(config.data),
            "train": train_stats.as_dict(),
            "eval": eval_stats.as_dict(),
            "train_pairs_used": len(trainer.train_dataset),
            "eval_pairs_used": len(eval_rows),
        },
        "code_version": code_version(),
        "device": "cuda" if use_cuda else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "train_samples_per_second": round(len(trainer.train_dataset) * config.epochs / train_seconds, 2),
        "steps": trainer.state.log_history,
        "eval_before": eval_before,
        "eval_after": eval_after,
        # how often the untrained policy already gives the better reply the higher likelihood
        "reference_likelihood_accuracy": evaluate_preference_pairs(scored_pairs, ref_chosen, ref_rejected)["accuracy"]
        if scored_pairs
        else None,
        "eval": evaluation,
        "eval_margins": margins,
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    # train() starts a fresh log, so the held-out loss before training is put back as step 0 (its accuracy is 0: ties)
    before_training = [{"step": 0, "eval_loss": eval_before["loss"]}] if eval_before else []
    _plot_dpo_curves(before_training + trainer.state.log_history, output / "training_curve.png")
    _write_dpo_card(metrics, output / "README.md", export_manifest=export_manifest(config.data))
    remove_empty_checkpoints(output / "checkpoints")
    return metrics


def _plot_dpo_curves(log_history: list[dict], path: Path) -> None:
    plt = pyplot()
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, key, label in ((loss_axis, "loss", "DPO loss"), (accuracy_axis, "rewards/accuracies", "reward accuracy")):
        train = [(row["step"], row[key]) for row in log_history if key in row]
        held_out = [(row["step"], row[f"eval_{key}"]) for row in log_history if f"eval_{key}" in row]
        if train:
            axis.plot(*zip(*train, strict=True), label="train")
        if held_out:
            axis.plot(*zip(*held_out, strict=True), "o-", label="held out")
        axis.set_xlabel("step")
        axis.set_ylabel(label)
        axis.legend()
    accuracy_axis.set_ylim(-0.02, 1.02)
    figure.suptitle("DPO training")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def number_or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _write_dpo_card(metrics: dict, path: Path, *, export_manifest: dict | None) -> None:
    config, data, evaluation = metrics["config"], metrics["data"], metrics["eval"]
    before, after = metrics["eval_before"], metrics["eval_after"]
    lines = [
        "# DPO policy",
        "",
        f"`{config['policy']}` trained with TRL's DPOTrainer (sigmoid loss, beta {config['beta']}) on the ranked",
        "replies of an oasst export: for each parent, every better-ranked reply is preferred to every worse one.",
        "The prompt is `training.policy.chat_prompt` of the conversation, the same text PPO and sampling use.",
        "",
        "## Data",
        "",
        f"- file `{data['file']}`, sha256 `{data['sha256']}`",
        f"- training trees / pairs: {data['train']['trees']} / {data['train']['pairs']}",
        f"- held-out trees / pairs: {data['eval']['trees']} / {data['eval']['pairs']}",
        f"- pairs used (TRL drops those whose prompt fills max_length): {data['train_pairs_used']} training, "
        f"{data['eval_pairs_used']} held out",
    ]
    lines += manifest_and_hyperparameters_markdown(export_manifest, config)
    lines += [
        "",
        "## Held-out preference accuracy",
        "",
        f"- implicit reward margin > 0: {format_accuracy(evaluation)}",
        f"- held-out DPO loss before / after: {number_or_na(before.get('loss'))} / {number_or_na(after.get('loss'))}",
        f"- untrained policy gives the better reply the higher likelihood: "
        f"{number_or_na(metrics['reference_likelihood_accuracy'])}",
    ]
    lines += [f"- language `{key}`: {format_accuracy(row)}" for key, row in evaluation.get("by_language", {}).items()]
    lines += [f"- rank gap {key}: {format_accuracy(row)}" for key, row in evaluation.get("by_rank_gap", {}).items()]
    lines += [
        "",
        f"Trained in {metrics['train_seconds']} s on {metrics['device']}, code version "
        f"`{metrics['code_version'] or 'unknown (no git)'}`.",
        "",
        "![training curve](training_curve.png)",
        "",
    ]
    path.write_text("\n".join(lines))
