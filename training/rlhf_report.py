"""The comparison at the end of the RLHF chain (``manage.py rlhf_report``): the held-out prompts of a PPO run answered
greedily by every policy (the first is the base), scored by the training reward model and, when one is given, by a
second reward model (the judge), and summed up per policy against the base.

Per policy (every interval 95%):

- mean reward, with a percentile bootstrap over held-out trees (``training.evaluation.tree_bootstrap_interval``);
- win rate against the base: a prompt counts 1 when the policy's reply scores higher than the base's reply to it,
  0 when lower, 1/2 on a tie (``SCORE_TIE``), with the Wilson interval;
- mean reply length in tokens (EOS not counted) and in characters;
- KL to the base, estimated on the policy's own greedy replies: the mean over prompts of the sum over reply tokens
  (EOS included) of ``log p_policy - log p_base`` at temperature 1. Greedy replies are not samples of the policy,
  so this is an estimate of how far the policy moved, not the KL of the two distributions; it needs one tokenizer.

The same held-out prompts as ``train_ppo``: root prompts (by default) whose chat prompt fits ``max_prompt_length``
tokens of the base's tokenizer, split by tree with PPO's ``eval_fraction`` and ``seed``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from training.data import PROMPT_KINDS, PromptItem, file_sha256, load_prompts, split_prompts_by_tree
from training.evaluation import EVALUATION_SEED, RESAMPLES, SCORE_TIE, outcome, tree_bootstrap_interval, wilson_interval
from training.outputs import code_version, pyplot
from training.policy import Answer, chat_prompt, greedy_answers, left_padded, load_policy
from training.ppo_config import PPOConfig
from training.ppo_math import logprobs_from_logits
from training.ppo_outputs import reward_model_provenance
from training.reward import load_reward_model, score_replies
from training.reward_report import format_interval
from training.trainer_plumbing import quiet_libraries

PPO_DEFAULTS = PPOConfig(reward_model="", prompts="", output="")
METHODS = {
    "mean_reward_interval": f"95% percentile bootstrap over held-out trees ({RESAMPLES} resamples, seed "
    f"{EVALUATION_SEED})",
    "win_rate": "share of prompts where the policy's reply scores higher than the base's (ties, within "
    f"{SCORE_TIE}, count 1/2), with the 95% Wilson interval",
    "kl": "estimate on greedy replies: mean over prompts of the sum over the policy's own reply tokens (EOS "
    "included) of log p_policy - log p_base, at temperature 1",
    "length": "reply tokens (EOS not counted) in the policy's tokenizer, and characters",
}


@dataclass(frozen=True)
class RLHFReportConfig:
    policies: tuple[str, ...]  # the first is the base
    reward_model: str
    prompts: str
    output: str
    labels: tuple[str, ...] = ()  # default: each policy's folder name
    judge: str | None = None
    max_new_tokens: int = PPO_DEFAULTS.max_new_tokens
    max_prompt_length: int = PPO_DEFAULTS.max_prompt_length
    prompt_kind: str = PPO_DEFAULTS.prompt_kind
    eval_fraction: float = PPO_DEFAULTS.eval_fraction
    seed: int = PPO_DEFAULTS.seed
    prompts_limit: int | None = None  # the first N held-out prompts; None: all of them
    batch_size: int = 8
    samples: int = 5

    def check(self) -> None:
        """A ValueError naming the first bad setting; nothing runs with one."""
        if not self.policies:
            raise ValueError("give at least one --policy: the first is the base the others are compared with")
        if self.labels and len(self.labels) != len(self.policies):
            raise ValueError(f"{len(self.labels)} --label for {len(self.policies)} --policy: give one per policy")
        labels = self.policy_labels()
        if len(set(labels)) != len(labels):
            raise ValueError(f"two policies share a label ({', '.join(labels)}): name them with --label")
        for name in ("max_new_tokens", "max_prompt_length", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.samples < 0 or (self.prompts_limit is not None and self.prompts_limit < 1):
            raise ValueError("samples must not be negative and prompts_limit must be at least 1")
        if not 0 < self.eval_fraction < 1:
            raise ValueError("eval_fraction must be in (0, 1)")
        if self.prompt_kind not in PROMPT_KINDS:
            raise ValueError(f"prompt_kind must be one of {', '.join(PROMPT_KINDS)}")

    def policy_labels(self) -> list[str]:
        return list(self.labels) if self.labels else [Path(policy).resolve().name for policy in self.policies]


def held_out_prompts(items: Sequence[PromptItem], tokenizer, config: RLHFReportConfig) -> tuple[list[PromptItem], int]:
    """PPO's held-out prompts (see the module docstring), the first ``prompts_limit``; and how many prompts were too
    long for ``max_prompt_length``."""
    fitting = [
        item
        for item in items
        if len(tokenizer(chat_prompt(tokenizer, item.conversation), add_special_tokens=False)["input_ids"])
        <= config.max_prompt_length
    ]
    _, held_out = split_prompts_by_tree(fitting, eval_fraction=config.eval_fraction, seed=config.seed)
    return held_out[: config.prompts_limit], len(items) - len(fitting)


def reply_logprob_sums(model, answers: Sequence[Answer], *, pad: int, batch_size: int) -> list[float]:
    """Sum over each answer's reply tokens of ``log p_model(token | prompt, earlier reply tokens)`` at temperature 1."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    sums = []
    for start in range(0, len(answers), batch_size):
        batch = answers[start : start + batch_size]
        prompts, prompt_mask = left_padded([answer.prompt_ids for answer in batch], pad)
        width = max(len(answer.reply_ids) for answer in batch)
        replies = torch.full((len(batch), width), pad, dtype=torch.long)
        reply_mask = torch.zeros((len(batch), width))
        for index, answer in enumerate(batch):
            replies[index, : len(answer.reply_ids)] = torch.tensor(answer.reply_ids, dtype=torch.long)
            reply_mask[index, : len(answer.reply_ids)] = 1
        sequences = torch.cat([prompts, replies], dim=1).to(device)
        attention_mask = torch.cat([prompt_mask, reply_mask.long()], dim=1).to(device)
        with torch.no_grad():
            logits = model(
                input_ids=sequences,
                attention_mask=attention_mask,
                position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
            ).logits[:, prompts.shape[1] - 1 : -1].float()
        logprobs = logprobs_from_logits(logits, sequences[:, prompts.shape[1] :]).cpu()
        sums += (logprobs * reply_mask).sum(-1).tolist()
    return sums


# --- the figures (plain data) ----------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def reward_summary(tree_ids: Sequence[str], rewards: Sequence[float], base_rewards: Sequence[float]) -> dict:
    """Mean reward with its bootstrap interval, and the win rate against the base's rewards on the same prompts."""
    outcomes = [outcome(mine, base, tie=SCORE_TIE) for mine, base in zip(rewards, base_rewards, strict=True)]
    mean = _mean(rewards)
    low, high = tree_bootstrap_interval(tree_ids, rewards)
    win_low, win_high = wilson_interval(sum(outcomes), len(outcomes))
    return {
        "mean_reward": round(mean, 4),
        "mean_reward_interval": [round(min(low, mean), 4), round(max(high, mean), 4)],
        "win_rate": round(_mean(outcomes), 4),
        "win_rate_interval": [round(win_low, 4), round(win_high, 4)],
        "wins": outcomes.count(1.0),
        "ties": outcomes.count(0.5),
        "losses": outcomes.count(0.0),
    }


def policy_summary(
    tree_ids: Sequence[str],
    answers: Sequence[Answer],
    rewards: Sequence[float],
    base_rewards: Sequence[float],
    *,
    kl: Sequence[float] | None,
    judge_rewards: Sequence[float] | None = None,
    base_judge_rewards: Sequence[float] | None = None,
) -> dict:
    """Every figure of one policy on the held-out prompts (see the module docstring); kl None: not comparable."""
    summary = {
        **reward_summary(tree_ids, rewards, base_rewards),
        "mean_tokens": round(_mean([answer.tokens for answer in answers]), 2),
        "mean_characters": round(_mean([len(answer.text) for answer in answers]), 1),
        "kl": None if kl is None else round(_mean(kl), 4),
    }
    if judge_rewards is not None:
        summary["judge"] = reward_summary(tree_ids, judge_rewards, base_judge_rewards)
    return summary


# --- the run ---------------------------------------------------------------------------------------------------------


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def rlhf_report(config: RLHFReportConfig, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Answer, score and compare (every refusal before anything is written); write report.json, report.md and
    report.png into config.output and return the report. ``progress(done, total)`` counts generated replies."""
    quiet_libraries()
    started = time.monotonic()
    config.check()
    labels = config.policy_labels()
    device = _device()
    base, base_tokenizer = load_policy(config.policies[0])
    base.to(device)
    prompts = load_prompts(config.prompts, kind=config.prompt_kind)
    items, long_prompts = held_out_prompts(prompts, base_tokenizer, config)
    if not items:
        raise ValueError(
            f"{config.prompts} gives no held-out prompts: it needs {config.prompt_kind} prompter messages of at most "
            f"{config.max_prompt_length} tokens in at least two trees"
        )
    done, total = 0, len(items) * len(config.policies)

    def generated(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    answers, kls = [], []
    for index, folder in enumerate(config.policies):
        policy, tokenizer = (base, base_tokenizer) if index == 0 else load_policy(folder)  # one policy beside the base
        policy.to(device)
        mine = greedy_answers(
            policy, tokenizer, [item.conversation for item in items], max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size, progress=generated,
        )
        answers.append(mine)
        if index == 0:
            kls.append([0.0] * len(items))  # the base against itself: log p - log p on every token
        elif tokenizer.get_vocab() != base_tokenizer.get_vocab():
            kls.append(None)  # token log-probs of two vocabularies do not compare
        else:
            pad = base_tokenizer.pad_token_id
            own = reply_logprob_sums(policy, mine, pad=pad, batch_size=config.batch_size)
            under_base = reply_logprob_sums(base, mine, pad=pad, batch_size=config.batch_size)
            kls.append([p - b for p, b in zip(own, under_base, strict=True)])

    rewards = _scores(config.reward_model, items, answers, device, config.batch_size)
    judged = _scores(config.judge, items, answers, device, config.batch_size) if config.judge else None
    tree_ids = [item.tree_id for item in items]
    policies = []
    for index, (label, folder) in enumerate(zip(labels, config.policies, strict=True)):
        summary = policy_summary(
            tree_ids, answers[index], rewards[index], rewards[0], kl=kls[index],
            judge_rewards=judged[index] if judged else None, base_judge_rewards=judged[0] if judged else None,
        )
        policies.append({"label": label, "folder": str(Path(folder).resolve()), "base": index == 0, **summary})
    report = {
        "config": asdict(config),
        "prompts": {
            "file": str(Path(config.prompts).resolve()),
            "sha256": file_sha256(config.prompts),
            "kind": config.prompt_kind,
            "held_out": len(items),
            "trees": len(set(tree_ids)),
            "long_prompts_left_out": long_prompts,
        },
        "reward_model": reward_model_provenance(config.reward_model),
        "judge": reward_model_provenance(config.judge) if config.judge else None,
        "methods": METHODS,
        "policies": policies,
        "answers": [
            {
                "tree_id": item.tree_id,
                "message_id": item.message_id,
                "prompt": item.conversation[-1].text,
                "replies": {
                    label: {
                        "reply": answers[index][row].text,
                        "tokens": answers[index][row].tokens,
                        "reward": rewards[index][row],
                        **({"judge_reward": judged[index][row]} if judged else {}),
                    }
                    for index, label in enumerate(labels)
                },
            }
            for row, item in enumerate(items)
        ],
        "code_version": code_version(),
        "device": "cuda" if device == "cuda" else f"cpu ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores)",
        "seconds": round(time.monotonic() - started, 2),
    }
    write_report(report, Path(config.output), samples=config.samples)
    return report


def _scores(folder: str, items: Sequence[PromptItem], answers: list[list[Answer]], device: str, batch_size: int):
    """Each policy's rewards from the reward model in ``folder``, read with its own tokenizer."""
    model, tokenizer, reading = load_reward_model(folder)
    model.to(device)
    return [
        score_replies(
            model, tokenizer, [(item.conversation, answer.text) for item, answer in zip(items, mine, strict=True)],
            reading=reading, batch_size=batch_size,
        )
        for mine in answers
    ]


# --- the files -------------------------------------------------------------------------------------------------------


def write_report(report: dict, output: Path, *, samples: int) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (output / "report.md").write_text(report_markdown(report, samples=samples))
    plot_report(report["policies"], output / "report.png")


def table_rows(report: dict) -> list[list[str]]:
    """The header and one row per policy of the Markdown table, every number as report.json holds it."""
    judged = report["judge"] is not None
    header = ["policy", "mean reward [95%]", "win rate vs base [95%]"]
    header += ["judge: mean reward [95%]", "judge: win rate vs base [95%]"] if judged else []
    header += ["mean tokens", "mean characters", "KL to base (greedy estimate)"]
    rows = [header]
    for policy in report["policies"]:
        row = [
            policy["label"] + (" (base)" if policy["base"] else ""),
            _with_interval(policy["mean_reward"], policy["mean_reward_interval"]),
            _with_interval(policy["win_rate"], policy["win_rate_interval"]),
        ]
        if judged:
            judge = policy["judge"]
            row += [
                _with_interval(judge["mean_reward"], judge["mean_reward_interval"]),
                _with_interval(judge["win_rate"], judge["win_rate_interval"]),
            ]
        row += [f"{policy['mean_tokens']:.2f}", f"{policy['mean_characters']:.1f}", _number(policy["kl"])]
        rows.append(row)
    return rows


def _with_interval(value: float, interval: list[float]) -> str:
    return f"{value:.3f} {format_interval(interval)}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _one_line(text: str, limit: int = 500) -> str:
    return text.replace("\n", " ").strip()[:limit]


def report_markdown(report: dict, *, samples: int) -> str:
    prompts, methods = report["prompts"], report["methods"]
    rows = table_rows(report)
    lines = [
        "# RLHF report",
        "",
        f"{prompts['held_out']} held-out prompts ({prompts['kind']} prompter messages of {prompts['trees']} trees "
        f"never used for PPO training) from `{prompts['file']}`, answered greedily by each policy and scored by the "
        f"reward model `{report['reward_model']['folder']}`"
        + (f" and by the judge `{report['judge']['folder']}`." if report["judge"] else "."),
        "",
        "| " + " | ".join(rows[0]) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + " |",
        *("| " + " | ".join(row) + " |" for row in rows[1:]),
        "",
        f"- mean reward interval: {methods['mean_reward_interval']};",
        f"- win rate: {methods['win_rate']};",
        f"- KL: {methods['kl']};",
        f"- length: {methods['length']}.",
        "",
        "![mean reward and win rate per policy](report.png)",
        "",
        "## Samples",
        "",
    ]
    for answer in report["answers"][:samples]:
        lines += [f"### {answer['message_id']}", "", "**Prompt:** " + _one_line(answer["prompt"]), ""]
        for label, reply in answer["replies"].items():
            judge = f", judge {reply['judge_reward']:.3f}" if "judge_reward" in reply else ""
            lines += [f"**{label}** (reward {reply['reward']:.3f}{judge}): " + _one_line(reply["reply"]), ""]
    return "\n".join(lines)


def plot_report(policies: Sequence[dict], path: Path) -> None:
    """Mean reward with its interval and the win rate against the base with its interval, per policy (and the
    judge's beside them when there is one)."""
    plt = pyplot()
    judged = "judge" in policies[0]
    labels = [policy["label"] for policy in policies]
    positions = list(range(len(policies)))
    figure, axes = plt.subplots(1, 3 if judged else 2, figsize=(5 * (3 if judged else 2), 4))

    def bars(axis, rows: Sequence[dict], key: str, offset: float, name: str, color: str) -> None:
        values = [row[key] for row in rows]
        errors = [
            [value - row[f"{key}_interval"][0] for value, row in zip(values, rows, strict=True)],
            [row[f"{key}_interval"][1] - value for value, row in zip(values, rows, strict=True)],
        ]
        axis.errorbar([p + offset for p in positions], values, yerr=errors, fmt="o", capsize=4, label=name, color=color)

    bars(axes[0], policies, "mean_reward", 0.0, "reward model", "tab:blue")
    axes[0].set_title("Mean reward (95% interval)")
    bars(axes[1], policies, "win_rate", -0.1 if judged else 0.0, "reward model", "tab:blue")
    axes[1].axhline(0.5, color="grey", linestyle="--", linewidth=1)
    axes[1].set_ylim(0, 1)
    axes[1].set_title("Win rate against the base (95% Wilson)")
    if judged:
        judges = [policy["judge"] for policy in policies]
        bars(axes[1], judges, "win_rate", 0.1, "judge", "tab:orange")
        axes[1].legend()
        bars(axes[2], judges, "mean_reward", 0.0, "judge", "tab:orange")
        axes[2].set_title("Judge's mean reward (95% interval)")
    for axis in axes:
        axis.set_xticks(positions, labels, rotation=20)
        axis.set_xlim(-0.5, len(policies) - 0.5)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
