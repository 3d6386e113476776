"""What a PPO run leaves in its output folder: the merged policy and tokenizer, samples before and after (JSON and
markdown), metrics.json with the reward model's provenance, the training curves and the model card."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

from training.data import file_sha256
from training.outputs import code_version, pyplot
from training.ppo_trainer import PPOTrainer


def reward_model_provenance(folder: str) -> dict:
    """What the reward model's own metrics.json says about where it came from."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return {"folder": str(Path(folder).resolve())}
    metrics = json.loads(path.read_text())
    return {
        "folder": str(Path(folder).resolve()),
        "data_file": metrics.get("data", {}).get("file"),
        "data_sha256": metrics.get("data", {}).get("sha256"),
        "held_out_accuracy": metrics.get("eval", {}).get("accuracy"),
        "held_out_interval": metrics.get("eval", {}).get("interval"),
        "held_out_pairs": metrics.get("eval", {}).get("pairs"),
        "length_rule_on_the_same_pairs": (metrics.get("eval", {}).get("length_rule") or {}).get("accuracy"),
        "base_model": metrics.get("config", {}).get("base_model"),
        "code_version": metrics.get("code_version"),
    }


def write_outputs(
    trainer: PPOTrainer, before: dict, after: dict, output: Path, *, seconds: float, in_sync: bool
) -> dict:
    import torch

    config = trainer.config
    policy = trainer.policy.merge_and_unload() if config.lora_rank else trainer.policy
    policy.save_pretrained(output, safe_serialization=True)
    trainer.tokenizer.save_pretrained(output)
    samples = [
        {
            "tree_id": item.tree_id,
            "message_id": item.message_id,
            "prompt": item.conversation[-1].text,
            "before": {"reply": before["texts"][index], "reward": before["rewards"][index]},
            "after": {"reply": after["texts"][index], "reward": after["rewards"][index]},
        }
        for index, item in enumerate(trainer.eval_prompts)
    ]
    (output / "samples.json").write_text(json.dumps(samples, indent=2, ensure_ascii=False))
    (output / "samples_before.json").unlink(missing_ok=True)
    step_seconds = [row["seconds"]["total"] for row in trainer.history]
    cuda = torch.cuda.is_available()
    metrics = {
        "config": asdict(config),
        "data": {
            "file": str(Path(config.prompts).resolve()),
            "sha256": file_sha256(config.prompts),
            "train_prompts": len(trainer.train_prompts),
            "eval_prompts": len(trainer.eval_prompts),
            "long_prompts_left_out": trainer.long_prompts_left_out,
        },
        "reward_model": reward_model_provenance(config.reward_model),
        "code_version": code_version(),
        "device": "cuda" if cuda else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "processes": trainer.processes.world_size,
        "processes_in_sync": in_sync,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainer.parameters),
        "total_seconds": round(seconds, 2),
        "seconds_per_step": round(sum(step_seconds) / len(step_seconds), 3) if step_seconds else None,
        "held_out_reward": {"before": before["reward_mean"], "after": after["reward_mean"]},
        "evaluations": trainer.evaluations,
        "steps": trainer.history,
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_ppo_curves(trainer.history, trainer.evaluations, output / "ppo_curves.png")
    _write_samples_markdown(samples, output / "samples.md")
    _write_model_card(metrics, output / "README.md")
    return metrics


def plot_ppo_curves(history: list[dict], evaluations: list[dict], path: Path) -> None:
    plt = pyplot()
    steps = [row["step"] for row in history]
    figure, axes = plt.subplots(2, 3, figsize=(14, 7))
    reward_axis = axes[0][0]
    means = [row["reward_mean"] for row in history]
    stds = [row["reward_std"] for row in history]
    reward_axis.plot(steps, means, label="training reward (sampled)")
    reward_axis.fill_between(
        steps, [m - s for m, s in zip(means, stds, strict=True)], [m + s for m, s in zip(means, stds, strict=True)],
        alpha=0.2,
    )
    reward_axis.plot([e["step"] for e in evaluations], [e["reward_mean"] for e in evaluations], "o-",
                     label="held-out reward (greedy)")
    reward_axis.set_title("Reward")
    reward_axis.legend()
    panels = [
        (axes[0][1], ("kl",), "KL to the reference (per reply)"),
        (axes[0][2], ("kl_coef",), "KL coefficient (adaptive)"),
        (axes[1][0], ("entropy",), "Entropy (per token)"),
        (axes[1][1], ("clip_fraction", "value_clip_fraction"), "Clip fractions"),
        (axes[1][2], ("value_loss",), "Value loss (reply length on the right)"),
    ]
    for axis, keys, title in panels:
        for key in keys:
            axis.plot(steps, [row[key] for row in history], label=key.replace("_", " "))
        axis.set_title(title)
        if len(keys) > 1:
            axis.legend()
    length_axis = axes[1][2].twinx()
    length_axis.plot(steps, [row["response_length"] for row in history], color="tab:orange", alpha=0.6)
    length_axis.set_ylabel("reply tokens")
    for axis in axes[1]:
        axis.set_xlabel("PPO step")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _write_samples_markdown(samples: list[dict], path: Path) -> None:
    lines = ["# Held-out samples before and after PPO", "", "Greedy replies; reward from the reward model.", ""]
    for sample in samples:
        lines += [
            f"## {sample['message_id']}",
            "",
            "**Prompt:** " + sample["prompt"].replace("\n", " ")[:500],
            "",
            f"**Before** (reward {sample['before']['reward']:.3f}): " + sample["before"]["reply"].replace("\n", " "),
            "",
            f"**After** (reward {sample['after']['reward']:.3f}): " + sample["after"]["reply"].replace("\n", " "),
            "",
        ]
    path.write_text("\n".join(lines))


def _write_model_card(metrics: dict, path: Path) -> None:
    config, data, reward = metrics["config"], metrics["data"], metrics["reward_model"]
    held_out = metrics["held_out_reward"]
    lines = [
        "# PPO policy",
        "",
        f"A causal LM fine-tuned with PPO (`training/ppo.py`) from `{config['policy']}` against the reward model",
        f"`{reward['folder']}`, with a per-token KL penalty to the starting policy.",
        "",
        "## Held-out reward (greedy replies)",
        "",
        f"- before: {held_out['before']:.4f}",
        f"- after: {held_out['after']:.4f}",
        f"- held-out prompts: {data['eval_prompts']} (trees never used for training)",
        "",
        "## Data",
        "",
        f"- prompts file: `{data['file']}`",
        f"- sha256: `{data['sha256']}`",
        f"- training prompts: {data['train_prompts']} ({config['prompt_kind']} prompter messages)",
        "",
        "## Reward model",
        "",
    ]
    lines += [f"- {key.replace('_', ' ')}: `{value}`" for key, value in reward.items()]
    lines += ["", "## Hyperparameters", "", "| parameter | value |", "| --- | --- |"]
    lines += [f"| {key} | `{value}` |" for key, value in config.items() if key not in ("output",)]
    seconds = metrics["seconds_per_step"]
    lines += [
        "",
        "## Provenance",
        "",
        f"- code version: `{metrics['code_version'] or 'unknown (no git)'}`",
        f"- device: {metrics['device']}, {metrics['processes']} process(es)",
        f"- parameters: {metrics['parameters']:,} ({metrics['trainable_parameters']:,} trained)",
        f"- time: {metrics['total_seconds']} s in all, {seconds if seconds is not None else 'n/a'} s per PPO step",
        "",
        "![PPO curves](ppo_curves.png)",
        "",
        "Samples: `samples.md` (and `samples.json`).",
        "",
    ]
    path.write_text("\n".join(lines))
