"""`manage.py rlhf_report` on tiny models: the tiny GPT-2 (base), a copy of it and its PPO run, scored by the marker
reward model; the figures on hand-made numbers; the refusals."""

import json
import re
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from training.evaluation import wilson_interval
from training.policy import Answer
from training.rlhf_report import policy_summary

from .tiny_models import TINY_PPO

# The PPO fixture records a run: every test declares the database so that it is set up even when run alone.
pytestmark = pytest.mark.django_db

NUMBER = re.compile(r"-?\d+\.\d+")


def run_report(output: Path, policies: list[Path], reward_model: Path, prompts: Path, **options) -> str:
    stdout = StringIO()
    call_command(
        "rlhf_report",
        policy=[str(policy) for policy in policies],
        reward_model=str(reward_model),
        prompts=str(prompts),
        output=str(output),
        max_new_tokens=TINY_PPO["max_new_tokens"],
        seed=TINY_PPO["seed"],  # the PPO run's held-out trees
        stdout=stdout,
        **options,
    )
    return stdout.getvalue()


@pytest.fixture(scope="module")
def report(ppo_run, tiny_gpt2, marker_reward_model, synthetic_export, tmp_path_factory):
    """base, an identical copy of it and the PPO policy, without a judge."""
    output = tmp_path_factory.mktemp("rlhf") / "report"
    stdout = run_report(
        output, [tiny_gpt2, tiny_gpt2, ppo_run[0]], marker_reward_model, synthetic_export,
        label=["base", "copy", "ppo"],
    )
    return output, json.loads((output / "report.json").read_text()), stdout


@pytest.fixture(scope="module")
def judged_report(ppo_run, tiny_gpt2, marker_reward_model, synthetic_export, tmp_path_factory):
    """base and PPO, judged by the training reward model itself (so the judge's figures must equal its own)."""
    output = tmp_path_factory.mktemp("rlhf-judged") / "report"
    run_report(
        output, [tiny_gpt2, ppo_run[0]], marker_reward_model, synthetic_export, judge=str(marker_reward_model),
        samples=2,
    )
    return output, json.loads((output / "report.json").read_text())


def by_label(report: dict) -> dict[str, dict]:
    return {policy["label"]: policy for policy in report["policies"]}


def test_the_report_writes_json_markdown_and_plot(report):
    output, data, stdout = report
    assert {path.name for path in output.iterdir()} == {"report.json", "report.md", "report.png"}
    assert (output / "report.png").stat().st_size > 1000
    assert data["prompts"]["held_out"] > 0 and len(data["answers"]) == data["prompts"]["held_out"]
    assert "report written to" in stdout


def test_the_base_against_itself_wins_half_and_has_no_kl(report):
    policies = by_label(report[1])
    for label in ("base", "copy"):  # the copy goes through the KL computation: log p - log p of equal weights
        assert policies[label]["win_rate"] == 0.5
        assert policies[label]["ties"] == report[1]["prompts"]["held_out"]
        assert policies[label]["kl"] == pytest.approx(0.0, abs=1e-4)
    assert policies["base"]["kl"] == 0.0
    assert policies["copy"]["mean_reward"] == policies["base"]["mean_reward"]


def test_the_ppo_policy_earns_more_reward_than_the_base(report):
    policies = by_label(report[1])
    assert policies["ppo"]["mean_reward"] > policies["base"]["mean_reward"]
    assert policies["ppo"]["win_rate"] > 0.5
    assert policies["ppo"]["kl"] is not None
    low, high = policies["ppo"]["win_rate_interval"]
    assert low <= policies["ppo"]["win_rate"] <= high


def test_the_markdown_table_shows_the_numbers_of_the_json(report):
    output, data, _ = report
    markdown = (output / "report.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert "judge" not in table[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert [row[0] for row in rows] == ["base (base)", "copy", "ppo"]
    for row, policy in zip(rows, data["policies"], strict=True):
        shown = [float(number) for cell in row[1:] for number in NUMBER.findall(cell)]
        expected = [
            policy["mean_reward"], *policy["mean_reward_interval"], policy["win_rate"], *policy["win_rate_interval"],
            policy["mean_tokens"], policy["mean_characters"], policy["kl"],
        ]
        # three decimals shown: off by at most half the last digit (a float's tie such as -2.1275 may go either way)
        assert shown == pytest.approx(expected, abs=5e-4 + 1e-9)
    assert markdown.count("**ppo** (reward") == 5  # the first five prompts side by side


def test_a_judge_adds_its_win_rate_and_mean_reward(judged_report, report):
    output, data = judged_report
    header = next(line for line in (output / "report.md").read_text().splitlines() if line.startswith("| "))
    assert "judge: win rate vs base" in header and "judge: mean reward" in header
    for policy in data["policies"]:
        assert policy["judge"]["win_rate"] == policy["win_rate"]
        assert policy["judge"]["mean_reward"] == policy["mean_reward"]
    assert data["judge"]["folder"] == data["reward_model"]["folder"]
    assert "judge_reward" in data["answers"][0]["replies"]["policy"]
    assert "judge" not in report[1]["policies"][0]


def test_win_rate_counts_ties_half_with_a_wilson_interval():
    answers = [Answer(prompt_ids=[1], reply_ids=[2, 3, 0], text="ab", tokens=2)] * 3
    summary = policy_summary(["a", "b", "c"], answers, [1.0, 2.0, 3.0], [1.0, 1.0, 4.0], kl=[0.5, 1.0, 1.5])
    assert (summary["wins"], summary["ties"], summary["losses"]) == (1, 1, 1)
    assert summary["win_rate"] == 0.5
    assert summary["win_rate_interval"] == pytest.approx(list(wilson_interval(1.5, 3)), abs=1e-4)
    assert summary["mean_reward"] == 2.0
    assert summary["mean_reward_interval"][0] <= 2.0 <= summary["mean_reward_interval"][1]
    assert (summary["mean_tokens"], summary["mean_characters"], summary["kl"]) == (2, 2, 1.0)
    assert "judge" not in summary


# --- refusals: nothing is written ------------------------------------------------------------------------------------


def refused(output: Path, match: str, **options) -> None:
    with pytest.raises(CommandError, match=match):
        call_command("rlhf_report", output=str(output), stdout=StringIO(), **options)
    assert not output.exists()


def test_a_file_without_prompts_is_refused(tiny_gpt2, marker_reward_model, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    refused(
        tmp_path / "out", "no held-out prompts",
        policy=[str(tiny_gpt2)], reward_model=str(marker_reward_model), prompts=str(empty),
    )


def test_a_policy_folder_without_a_tokenizer_is_refused(tiny_gpt2, marker_reward_model, synthetic_export, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_gpt2 / "config.json", bare)
    refused(
        tmp_path / "out", "holds no tokenizer",
        policy=[str(tiny_gpt2), str(bare)], reward_model=str(marker_reward_model), prompts=str(synthetic_export),
    )


def test_a_folder_that_is_not_a_reward_model_is_refused(tiny_gpt2, tiny_bert, marker_reward_model, synthetic_export,
                                                        tmp_path):
    common = {"policy": [str(tiny_gpt2)], "prompts": str(synthetic_export)}
    refused(tmp_path / "out", "has no reward_model.json", reward_model=str(tiny_bert), **common)
    refused(tmp_path / "out", "is not a reward model", reward_model=str(tiny_gpt2), **common)
    refused(
        tmp_path / "out", "has no reward_model.json", reward_model=str(marker_reward_model), judge=str(tiny_bert),
        **common,
    )


def test_no_policy_is_refused(marker_reward_model, synthetic_export, tmp_path):
    refused(
        tmp_path / "out", "at least one --policy",
        policy=[], reward_model=str(marker_reward_model), prompts=str(synthetic_export),
    )


def test_two_policies_with_one_name_are_refused(tiny_gpt2, marker_reward_model, synthetic_export, tmp_path):
    refused(
        tmp_path / "out", "share a label",
        policy=[str(tiny_gpt2), str(tiny_gpt2)], reward_model=str(marker_reward_model), prompts=str(synthetic_export),
    )
