"""What a reward model's figures look like to a reader: the accuracy plot with error bars, the summary lines a
command prints, the model card. Every accuracy is shown with its 95% interval and with the length rule and a
coin on the same pairs (``training.evaluation`` computes them)."""

from __future__ import annotations

from pathlib import Path

from training.outputs import manifest_and_hyperparameters_markdown, pyplot


def format_interval(interval: list[float] | None) -> str:
    return "" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def format_accuracy(row: dict) -> str:
    """``0.514 [0.401, 0.626] (72 pairs, 10 trees)``; n/a without pairs."""
    if row.get("accuracy") is None:
        return "n/a"
    interval = f" {format_interval(row['interval'])}" if row.get("interval") else ""
    trees = f", {row['trees']} trees" if row.get("trees") else ""
    return f"{row['accuracy']:.3f}{interval} ({row['pairs']} pairs{trees})"


def row_with_length_rule(row: dict) -> str:
    rule = row.get("length_rule")
    return format_accuracy(row) + (f"  length rule {_rule_text(rule)}" if rule else "")


def evaluation_lines(evaluation: dict, *, label: str = "pairwise accuracy") -> list[tuple[str, str]]:
    """(name, value) rows: accuracy, the length rule and a coin on the same pairs, the difference, and the
    accuracy by rank gap and by language, each with its interval."""
    if evaluation.get("accuracy") is None:
        return [(label, "n/a (no pairs)")]
    rule, coin = evaluation["length_rule"], evaluation["random"]
    difference = evaluation["model_minus_length_rule"]
    rows = [
        (label, format_accuracy(evaluation)),
        ("  length rule (longer wins)", f"{rule['accuracy']:.3f} {format_interval(rule['interval'])}"),
        ("  random (a fair coin)", f"{coin['accuracy']:.3f} {format_interval(coin['interval'])}"),
        ("  model minus length rule", f"{difference['difference']:+.3f} {format_interval(difference['interval'])}"),
    ]
    rows += [(f"  rank gap {gap}", row_with_length_rule(row)) for gap, row in evaluation["by_rank_gap"].items()]
    rows += [(f"  language {lang}", row_with_length_rule(row)) for lang, row in evaluation["by_language"].items()]
    return rows


def evaluation_markdown(evaluation: dict) -> list[str]:
    """A markdown table of the evaluation: one row per slice, model and length rule side by side."""
    if evaluation.get("accuracy") is None:
        return ["No pairs to evaluate."]
    coin, difference = evaluation["random"], evaluation["model_minus_length_rule"]
    lines = [
        "| pairs | model (95% interval) | length rule (95% interval) | trees |",
        "| --- | --- | --- | ---: |",
    ]
    slices = [("all", evaluation)]
    slices += [(f"rank gap {gap}", row) for gap, row in evaluation.get("by_rank_gap", {}).items()]
    slices += [(f"language `{lang}`", row) for lang, row in evaluation.get("by_language", {}).items()]
    for name, row in slices:
        rule = row["length_rule"]
        lines.append(
            f"| {name} ({row['pairs']}) | {row['accuracy']:.3f} {format_interval(row['interval'])} "
            f"| {rule['accuracy']:.3f} {format_interval(rule['interval'])} | {row['trees']} |"
        )
    lines += [
        "",
        f"- random (a fair coin on {evaluation['pairs']} pairs): 0.5, 95% of coins land in "
        f"{format_interval(coin['interval'])}",
        f"- model minus length rule: {difference['difference']:+.3f} {format_interval(difference['interval'])} "
        "(paired bootstrap over trees; an interval above 0 means the model beats the rule)",
        "- intervals: the envelope of the Wilson interval and a bootstrap over trees (see `training/evaluation.py`)",
    ]
    return lines


def _error_bars(rows: list[dict]) -> list[list[float]]:
    return [
        [row["accuracy"] - row["interval"][0] for row in rows],
        [row["interval"][1] - row["accuracy"] for row in rows],
    ]


def plot_accuracy(
    evaluation: dict, chosen: list[float], rejected: list[float], path: Path, *, title: str = "Held-out pairs"
) -> None:
    """Model, length rule and coin with 95% error bars; the same by rank gap; the rewards of both replies."""
    plt = pyplot()
    figure, (overall_axis, gap_axis, histogram_axis) = plt.subplots(1, 3, figsize=(15, 4.2))
    if evaluation.get("accuracy") is not None:
        bars = [evaluation, evaluation["length_rule"], evaluation["random"]]
        overall_axis.bar(
            ["model", "length rule", "random"],
            [row["accuracy"] for row in bars],
            yerr=_error_bars(bars),
            capsize=6,
            color=["tab:blue", "tab:orange", "tab:grey"],
        )
        gaps = evaluation.get("by_rank_gap", {})
        positions = range(len(gaps))
        model_rows = list(gaps.values())
        rule_rows = [row["length_rule"] for row in model_rows]
        gap_axis.bar([p - 0.2 for p in positions], [r["accuracy"] for r in model_rows], width=0.4,
                     yerr=_error_bars(model_rows), capsize=4, label="model", color="tab:blue")
        gap_axis.bar([p + 0.2 for p in positions], [r["accuracy"] for r in rule_rows], width=0.4,
                     yerr=_error_bars(rule_rows), capsize=4, label="length rule", color="tab:orange")
        gap_axis.set_xticks(list(positions), [f"gap {gap}\n({row['pairs']} pairs)" for gap, row in gaps.items()])
        gap_axis.legend(loc="lower right")
    for axis in (overall_axis, gap_axis):
        axis.axhline(0.5, color="grey", linestyle=":")
        axis.set_ylim(0, 1)
        axis.set_ylabel("pairwise accuracy (95% interval)")
    overall_axis.set_title(f"{title}: {evaluation.get('pairs', 0)} pairs")
    gap_axis.set_title("By rank gap")
    if chosen:
        histogram_axis.hist([chosen, rejected], bins=20, label=["better reply", "worse reply"])
        histogram_axis.legend()
    histogram_axis.set_xlabel("reward")
    histogram_axis.set_title("Rewards")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_training_curve(log_history: list[dict], path: Path) -> None:
    plt = pyplot()
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


def _rule_text(rule: dict | None) -> str:
    return f"{rule['accuracy']:.3f} {format_interval(rule['interval'])}" if rule else "n/a"


def cross_validation_markdown(cv: dict) -> list[str]:
    pooled = cv["pooled"]
    lines = [
        f"{cv['k']}-fold cross-validation over trees (seed {cv['seed']}): every tree is scored by the model that",
        "did not train on it; the out-of-fold scores of all folds are pooled.",
        "",
        *evaluation_markdown(pooled),
        "",
        "| fold | trees | training pairs | held-out pairs | model | length rule | seconds |",
        "| ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for fold in cv["folds"]:
        evaluation = fold["eval"]
        rule = evaluation.get("length_rule")
        lines.append(
            f"| {fold['fold']} | {fold['trees']} | {fold['train_pairs']} | {evaluation['pairs']} "
            f"| {format_accuracy(evaluation)} | {_rule_text(rule)} | {fold['train_seconds']} |"
        )
    return lines


def write_model_card(metrics: dict, path: Path, *, manifest: dict | None) -> None:
    config, data, evaluation = metrics["config"], metrics["data"], metrics["eval"]
    lines = [
        "# Reward model",
        "",
        "A Bradley-Terry reward model (loss `-logsigmoid(r_better - r_worse) + 0.001 * mean(r^2)`) trained with",
        "TRL's RewardTrainer on ranked replies of an oasst export. Input: the conversation and the reply,",
        "tokenised by `training.reward.encode_reply` (the same function scores replies).",
        "",
        "## Held-out pairwise accuracy",
        "",
        f"**{format_accuracy(evaluation)}**, on trees the model never saw; beside it, on the same pairs:",
        "",
        *evaluation_markdown(evaluation),
    ]
    if metrics.get("cv"):
        lines += ["", "## Cross-validation", "", *cross_validation_markdown(metrics["cv"])]
    lines += [
        "",
        "## Data",
        "",
        f"- file: `{data['file']}`",
        f"- sha256: `{data['sha256']}`",
        f"- train: {data['train']['trees']} trees, {data['train']['groups']} groups, {data['train']['pairs']} pairs",
        f"- held out: {data['eval']['trees']} trees, {data['eval']['groups']} groups, {data['eval']['pairs']} pairs",
        f"- pairs per language (train): {data['train']['languages']}",
    ]
    lines += manifest_and_hyperparameters_markdown(manifest, config)
    lines += [
        "",
        "## Provenance",
        "",
        f"- code version: `{metrics['code_version'] or 'unknown (no git)'}`",
        f"- device: {metrics['device']}",
        f"- training time: {metrics['train_seconds']} s ({metrics['train_samples_per_second']} pairs/s)",
        "",
        "![training curve](training_curve.png)",
        "",
        "![accuracy](accuracy.png)",
        "",
    ]
    path.write_text("\n".join(lines))
