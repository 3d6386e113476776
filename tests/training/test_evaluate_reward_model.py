"""`manage.py evaluate_reward_model`: its figures, its files, its refusals, and the evaluations a run shows."""

import gzip
import json
import shutil
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from training.models import RewardModelEvaluation, TrainingRun
from training.services import training_run_add_evaluation

from .tiny_models import node

pytestmark = pytest.mark.django_db

# the synthetic export: 60 trees, 3 ranked replies each (the deleted fourth is skipped): 3 pairs a tree
EXPORT_PAIRS = 180


def evaluate(model, *data, **options) -> str:
    stdout = StringIO()
    call_command("evaluate_reward_model", model=str(model), data=[str(path) for path in data], stdout=stdout, **options)
    return stdout.getvalue()


def hh_pairs_file(path, *, rows: int):
    """A TRL implicit-prompt pair file, gzipped like the HH-RLHF splits."""
    with gzip.open(path, "wt") as handle:
        for index in range(rows):
            prompt = f"\n\nHuman: the quick dog {index}?\n\nAssistant:"
            record = {"chosen": f"{prompt} a warm splendid stone", "rejected": f"{prompt} a cold stone {index}"}
            handle.write(json.dumps(record) + "\n")
    return path


def test_figures_are_printed_and_written_as_json_and_plot(marker_reward_model, synthetic_export, tmp_path):
    out = tmp_path / "reports"
    stdout = evaluate(marker_reward_model, synthetic_export, out=str(out))
    report = json.loads((out / "export.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["pairs"] == EXPORT_PAIRS and evaluation["trees"] == 60
    assert evaluation["interval"][0] <= evaluation["accuracy"] <= evaluation["interval"][1]
    assert evaluation["accuracy"] > evaluation["random"]["interval"][1]  # the marker was learnt
    assert set(evaluation["by_rank_gap"]) == {"1", "2"} and set(evaluation["by_language"]) == {"en"}
    assert len(report["rewards"]["chosen"]) == EXPORT_PAIRS and report["layout"] == "oasst export"
    assert len(report["sha256"]) == 64 and report["replies_per_second"] > 0
    assert (out / "export.png").stat().st_size > 10_000
    low, high = evaluation["interval"]
    assert f"pairwise accuracy            {evaluation['accuracy']:.3f} [{low:.3f}, {high:.3f}]" in stdout
    rule = evaluation["length_rule"]
    assert f"length rule (longer wins)  {rule['accuracy']:.3f}" in stdout
    for line in ("random (a fair coin)", "model minus length rule", "rank gap 1", "rank gap 2", "language en"):
        assert line in stdout, line
    # the model trained on this very file: said in the JSON and on the terminal
    assert report["model_trained_on_this_file"] is True
    assert "warning: the model trained on this file" in stdout
    # a model folder with no recorded run is evaluated but nothing is recorded
    assert not RewardModelEvaluation.objects.exists()


def test_several_files_are_reported_one_by_one_including_a_trl_pair_file(
    marker_reward_model, synthetic_export, tmp_path
):
    pairs = hh_pairs_file(tmp_path / "helpful-test.jsonl.gz", rows=20)
    out = tmp_path / "reports"
    stdout = evaluate(marker_reward_model, synthetic_export, pairs, out=str(out), batch_size=7)
    hh = json.loads((out / "helpful-test.json").read_text())
    assert hh["layout"] == "pairs, implicit prompt, text"
    assert hh["evaluation"]["pairs"] == 20 and hh["evaluation"]["trees"] == 20  # a pair is a tree of its own
    assert hh["model_trained_on_this_file"] is False and stdout.count("warning: the model trained") == 1
    assert json.loads((out / "export.json").read_text())["evaluation"]["pairs"] == EXPORT_PAIRS
    assert stdout.count("pairwise accuracy") == 2 and "helpful-test.jsonl.gz" in stdout


def test_scores_do_not_depend_on_the_batch_size(marker_reward_model, synthetic_export, tmp_path):
    evaluate(marker_reward_model, synthetic_export, out=str(tmp_path / "a"), batch_size=1)
    evaluate(marker_reward_model, synthetic_export, out=str(tmp_path / "b"), batch_size=64)
    one, many = (json.loads((tmp_path / name / "export.json").read_text()) for name in ("a", "b"))
    for side in ("chosen", "rejected"):
        assert one["rewards"][side] == pytest.approx(many["rewards"][side], abs=1e-5)
    # every pair that float noise cannot decide gets the same verdict (closer pairs may land on either side of
    # the tie margin: a tiny model gives many near-equal rewards)
    verdicts = [[c > r for c, r in zip(run["rewards"]["chosen"], run["rewards"]["rejected"], strict=True)]
                for run in (one, many)]
    decided = [i for i, (c, r) in enumerate(zip(one["rewards"]["chosen"], one["rewards"]["rejected"], strict=True))
               if abs(c - r) > 1e-4]
    assert decided and [verdicts[0][i] for i in decided] == [verdicts[1][i] for i in decided]


def test_an_evaluation_of_a_recorded_run_is_kept_and_shown_in_the_admin(
    marker_reward_model, synthetic_export, tmp_path, admin_client
):
    folder = shutil.copytree(marker_reward_model, tmp_path / "rm")
    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED, data_file=str(synthetic_export),
        output_dir=str(folder.resolve()),
    )
    stdout = evaluate(folder, synthetic_export)
    report = json.loads((folder / "evaluations" / "export.json").read_text())
    assert f"recorded on training run {run.pk}" in stdout
    recorded = run.evaluations.get()
    assert (recorded.pairs, recorded.accuracy) == (EXPORT_PAIRS, report["evaluation"]["accuracy"])
    assert [recorded.accuracy_low, recorded.accuracy_high] == report["evaluation"]["interval"]
    assert recorded.length_rule == report["evaluation"]["length_rule"]["accuracy"]
    assert recorded.data_sha256 == report["sha256"] and recorded.report_file.endswith("export.json")

    page = admin_client.get(f"/admin/training/trainingrun/{run.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "accuracy (95% interval)" in html and "export.jsonl" in html and recorded.data_sha256[:12] in html
    assert f"{recorded.accuracy:.3f} [{recorded.accuracy_low:.3f}, {recorded.accuracy_high:.3f}]" in html
    assert f"0.5 [{recorded.random_low:.3f}, {recorded.random_high:.3f}]" in html


def test_a_file_without_pairs_is_refused_and_nothing_is_written(marker_reward_model, synthetic_export, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"message_tree_id": "t", "prompt": node("t", None, "hello", "prompter")}) + "\n")
    out = tmp_path / "reports"
    with pytest.raises(CommandError, match="no ranked replies to evaluate on|holds no preference pairs"):
        evaluate(marker_reward_model, synthetic_export, empty, out=str(out))
    assert not out.exists()


def test_a_missing_file_is_refused(marker_reward_model, tmp_path):
    with pytest.raises(CommandError, match="no data file or folder at"):
        evaluate(marker_reward_model, tmp_path / "nothing.jsonl", out=str(tmp_path / "reports"))
    assert not (tmp_path / "reports").exists()


def test_two_files_with_one_report_name_are_refused(marker_reward_model, synthetic_export, tmp_path):
    (tmp_path / "other").mkdir()
    twin = shutil.copy(synthetic_export, tmp_path / "other" / "export.jsonl.gz")
    with pytest.raises(CommandError, match="both be reported as export.json"):
        evaluate(marker_reward_model, synthetic_export, twin, out=str(tmp_path / "reports"))
    assert not (tmp_path / "reports").exists()


def test_a_folder_without_a_model_config_is_refused(synthetic_export, tmp_path):
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(CommandError, match="is not a reward model: it holds no config.json"):
        evaluate(tmp_path / "empty-model", synthetic_export)
    with pytest.raises(CommandError, match="no model folder at"):
        evaluate(tmp_path / "nowhere", synthetic_export)
    assert not (tmp_path / "empty-model" / "evaluations").exists()


def test_a_causal_language_model_is_not_a_reward_model(tiny_gpt2, synthetic_export, tmp_path):
    with pytest.raises(CommandError, match="GPT2LMHeadModel, not a sequence classifier"):
        evaluate(tiny_gpt2, synthetic_export, out=str(tmp_path / "reports"))
    assert not (tmp_path / "reports").exists()


def test_a_classifier_with_two_labels_is_not_a_reward_model(marker_reward_model, synthetic_export, tmp_path):
    from transformers import AutoConfig

    folder = shutil.copytree(marker_reward_model, tmp_path / "two-labels")
    config = AutoConfig.from_pretrained(folder)
    config.num_labels = 2
    config.save_pretrained(folder)
    with pytest.raises(CommandError, match="a sequence classifier with 2 labels"):
        evaluate(folder, synthetic_export)
    assert not (folder / "evaluations").exists()


def test_a_classifier_not_written_by_train_reward_model_is_refused(tiny_bert, synthetic_export, tmp_path):
    with pytest.raises(CommandError, match="has no reward_model.json"):
        evaluate(tiny_bert, synthetic_export, out=str(tmp_path / "reports"))
    assert not (tmp_path / "reports").exists()


def test_the_service_records_evaluations_of_reward_models_with_pairs_only():
    evaluation = {
        "accuracy": 0.6, "pairs": 10, "interval": [0.3, 0.8], "length_rule": {"accuracy": 0.7},
        "random": {"accuracy": 0.5, "interval": [0.19, 0.81]},
    }
    ppo = TrainingRun.objects.create(kind=TrainingRun.Kind.PPO, data_file="p.jsonl", output_dir="/ppo")
    with pytest.raises(ValidationError, match="not a reward model"):
        training_run_add_evaluation(run=ppo, data_file="f.jsonl", data_sha256="0" * 64, evaluation=evaluation)
    reward = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, data_file="d.jsonl", output_dir="/rm")
    with pytest.raises(ValidationError, match="without pairs"):
        training_run_add_evaluation(
            run=reward, data_file="f.jsonl", data_sha256="0" * 64, evaluation={"accuracy": None, "pairs": 0}
        )
    assert not RewardModelEvaluation.objects.exists()
    recorded = training_run_add_evaluation(run=reward, data_file="f.jsonl", data_sha256="0" * 64, evaluation=evaluation)
    assert (recorded.accuracy_low, recorded.accuracy_high, recorded.random_high) == (0.3, 0.8, 0.81)
