"""DPO end to end through `manage.py train_dpo` on the tiny GPT-2 and synthetic export of conftest, and its refusals."""

import json
import math
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from training.data import PreferencePair, Turn
from training.dpo import completion_logps, preference_dataset
from training.models import TrainingRun
from training.policy import chat_prompt, load_policy

from .tiny_models import node, recorded_command_run, write_synthetic_export

# The module fixture records a run: every test declares the database so that it is set up even when run alone.
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def trained(tiny_gpt2, synthetic_export, tmp_path_factory, django_db_setup, django_db_blocker):
    with recorded_command_run(
        django_db_blocker, "train_dpo", tmp_path_factory.mktemp("run") / "dpo", data=str(synthetic_export),
        policy=str(tiny_gpt2), epochs=3, lr=5e-3, beta=0.1, batch_size=16, max_length=64, eval_fraction=0.25, seed=0,
    ) as result:
        yield result


def test_the_command_writes_policy_tokenizer_metrics_curve_and_card(trained):
    output, _, _ = trained
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.json",
        "training_curve.png",
        "README.md",
    ):
        assert (output / name).is_file(), name
    assert not (output / "checkpoints").exists()
    card = (output / "README.md").read_text()
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["data"]["sha256"] in card and "export.jsonl" in card
    assert "preference accuracy" in card and "| beta | `0.1` |" in card


def test_dpo_learns_the_marker_on_held_out_trees(trained):
    output, stdout, _ = trained
    metrics = json.loads((output / "metrics.json").read_text())
    data, evaluation = metrics["data"], metrics["eval"]
    assert (data["train"]["trees"], data["eval"]["trees"]) == (45, 15)
    assert (data["train_pairs_used"], data["eval_pairs_used"]) == (45 * 3, 15 * 3)
    assert evaluation["pairs"] == 45 and evaluation["by_language"]["en"]["pairs"] == 45
    assert set(evaluation["by_rank_gap"]) == {"1", "2"}
    # a third of the pairs compare two unmarked replies (noise); every rank-gap-2 pair is best-with-marker vs worst
    assert evaluation["accuracy"] >= 0.7
    assert evaluation["by_rank_gap"]["2"]["accuracy"] >= 0.8
    assert metrics["eval_before"]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert metrics["eval_after"]["loss"] < metrics["eval_before"]["loss"]
    # the margins computed here agree with TRL's own (batch-averaged) reward accuracy
    assert evaluation["accuracy"] == pytest.approx(metrics["eval_after"]["rewards/accuracies"], abs=0.05)
    assert len(metrics["eval_margins"]) == 45
    assert any("loss" in row for row in metrics["steps"])
    assert "held-out preference accuracy" in stdout and "DPO policy written" in stdout


def test_the_saved_policy_prefers_a_marked_reply_more_than_the_base_policy_does(trained, tiny_gpt2):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    output, _, _ = trained
    conversation = (Turn("prompter", "the quick dog and the river"),)
    pair = PreferencePair(
        "t", "en", conversation, "a warm stone splendid near the house", "a warm stone near the house", 1
    )

    def log_ratio(folder: Path) -> float:
        model, tokenizer = load_policy(folder)
        row = preference_dataset([pair], tokenizer)[0]
        completion_ids = {
            key: tokenizer(row[key.removesuffix("_ids")], add_special_tokens=False)["input_ids"]
            for key in ("chosen_ids", "rejected_ids")
        }
        prompt_ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        collator = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
        chosen, rejected = completion_logps(model, collator, [{"prompt_ids": prompt_ids, **completion_ids}])
        return chosen[0] - rejected[0]

    assert log_ratio(output) > log_ratio(tiny_gpt2)


def test_pairs_become_chat_prompts_and_replies_ending_in_one_eos(tiny_gpt2):
    _, tokenizer = load_policy(tiny_gpt2)
    conversation = (Turn("prompter", "hello there"),)
    pair = PreferencePair("t", "en", conversation, "better reply", "worse reply", 1)
    row = preference_dataset([pair], tokenizer)[0]
    eos = tokenizer.eos_token
    assert row["prompt"] == chat_prompt(tokenizer, conversation)
    assert (row["chosen"], row["rejected"]) == (f" better reply{eos}", f" worse reply{eos}")
    assert row["pair_index"] == 0


def test_the_command_records_a_succeeded_dpo_run_with_provenance(trained):
    output, stdout, run = trained
    assert run.kind == TrainingRun.Kind.DPO
    assert (run.status, run.progress) == (TrainingRun.Status.SUCCEEDED, 100)
    assert run.data_sha256 == json.loads((output / "metrics.json").read_text())["data"]["sha256"]
    assert run.parameters["beta"] == 0.1 and run.parameters["lr"] == 0.005
    assert run.metrics["eval"]["pairs"] == 45 and run.metrics["eval"]["accuracy"] >= 0.7
    assert "eval_margins" not in run.metrics and "steps" not in run.metrics
    assert "step" in run.log_tail
    assert f"training run {run.pk} recorded" in stdout


def test_missing_data_file_is_refused(tmp_path):
    with pytest.raises(CommandError, match="no export file"):
        call_command("train_dpo", data=str(tmp_path / "none.jsonl"), output=str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("option", "value"), [("epochs", 0), ("beta", 0), ("beta", -0.1), ("lr", 0), ("eval_fraction", 1)]
)
def test_bad_numbers_are_refused(tmp_path, option, value):
    data = tmp_path / "export.jsonl"
    data.write_text("")
    with pytest.raises(CommandError, match="must be"):
        call_command("train_dpo", data=str(data), output=str(tmp_path / "out"), **{option: value})


def test_without_a_prepared_policy_the_command_names_prepare_base_models(tmp_path, settings):
    settings.MODELS_DIR = str(tmp_path / "models")
    data = tmp_path / "export.jsonl"
    data.write_text("")
    with pytest.raises(CommandError, match="prepare_base_models"):
        call_command("train_dpo", data=str(data), output=str(tmp_path / "out"))


def test_an_export_without_ranked_replies_is_refused_and_the_run_ends_failed(tiny_gpt2, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text(json.dumps({"message_tree_id": "t", "prompt": node("t", None, "hello", "prompter")}) + "\n")
    with pytest.raises(CommandError, match="no ranked replies"):
        call_command("train_dpo", data=str(data), output=str(tmp_path / "out"), policy=str(tiny_gpt2))
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "out").resolve()))
    assert (run.kind, run.status) == (TrainingRun.Kind.DPO, TrainingRun.Status.FAILED)
    assert "no ranked replies" in run.error and run.finished_at is not None


def test_a_crash_inside_training_ends_the_run_failed_with_the_error(tiny_gpt2, tmp_path, monkeypatch):
    data = tmp_path / "export.jsonl"
    write_synthetic_export(data, trees=4, seed=2)

    def crash(config, progress=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("training.management.commands.train_dpo.train_dpo", crash)
    with pytest.raises(RuntimeError):
        call_command("train_dpo", data=str(data), output=str(tmp_path / "out"), policy=str(tiny_gpt2))
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "out").resolve()))
    assert (run.status, run.error) == (TrainingRun.Status.FAILED, "RuntimeError: out of memory")


def test_prompts_that_fill_max_length_leave_nothing_to_learn_and_the_run_ends_failed(tiny_gpt2, tmp_path):
    data = tmp_path / "export.jsonl"
    write_synthetic_export(data, trees=4, seed=3)
    with pytest.raises(CommandError, match="every training prompt fills --max-length 5"):
        call_command("train_dpo", data=str(data), output=str(tmp_path / "out"), policy=str(tiny_gpt2), max_length=5)
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "out").resolve()))
    assert run.status == TrainingRun.Status.FAILED


def test_the_admin_launches_a_dpo_run_that_the_job_trains(
    client, settings, tmp_path, synthetic_export, tiny_gpt2, django_capture_on_commit_callbacks
):
    from tests.factories import AdminFactory

    settings.EXPORT_DIR = str(tmp_path)
    (tmp_path / "oasst-trees.jsonl").write_bytes(synthetic_export.read_bytes())
    admin = AdminFactory()
    client.force_login(admin)
    assert client.get("/admin/training/trainingrun/add/?kind=dpo").status_code == 200
    form = {"data_file": "oasst-trees.jsonl", "policy": str(tiny_gpt2), "epochs": "1", "lr": "0.001", "beta": "0.1",
            "batch_size": "16"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/training/trainingrun/add/?kind=dpo", form)
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.DPO, launched_by=admin)
    assert response.status_code == 302
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error  # Celery runs eagerly without a broker
    assert run.parameters["beta"] == 0.1 and run.parameters["policy"] == str(tiny_gpt2)
    assert run.metrics["eval"]["pairs"] > 0 and "eval_margins" not in run.metrics
    assert (Path(run.output_dir) / "training_curve.png").is_file()


def test_the_dpo_launch_form_refuses_a_non_positive_beta(admin_client, settings, tmp_path, tiny_gpt2):
    settings.EXPORT_DIR = str(tmp_path)
    (tmp_path / "oasst-trees.jsonl").write_text("")
    form = {"data_file": "oasst-trees.jsonl", "policy": str(tiny_gpt2), "epochs": "1", "lr": "0.001", "beta": "0",
            "batch_size": "16"}
    response = admin_client.post("/admin/training/trainingrun/add/?kind=dpo", form)
    assert response.status_code == 200 and "beta" in response.context["form"].errors
    assert not TrainingRun.objects.filter(kind=TrainingRun.Kind.DPO, launched_by__isnull=False).exists()
