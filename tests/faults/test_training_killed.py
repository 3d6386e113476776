"""A training command killed mid-run ends `failed`, never stuck `running`: on SIGTERM the command
records the failure itself; on SIGKILL it cannot, its heartbeat stops and the stale-run check
(training.runs_fail_stale) fails the run."""

import signal
import time
from datetime import timedelta

import pytest
from django.conf import settings

from tests.training.tiny_models import build_tiny_bert, build_tiny_gpt2, write_synthetic_export
from training.models import TrainingRun
from training.services import training_runs_fail_stale

from .conftest import PYTHON, subprocess_env, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults-training")
    export = folder / "export.jsonl"
    write_synthetic_export(export, trees=60, seed=1)
    return {"export": export, "bert": build_tiny_bert(folder / "bert"), "gpt2": build_tiny_gpt2(folder / "gpt2"),
            "folder": folder}


def start_training(processes, tiny_files, command: str, output_name: str):
    """A training command that would run for hours; returns it once its run is recorded running."""
    output = tiny_files["folder"] / output_name
    model = ["--base-model", str(tiny_files["bert"])] if command == "train_reward_model" else [
        "--policy", str(tiny_files["gpt2"])]
    process = processes([PYTHON, "manage.py", command, "--data", str(tiny_files["export"]), "--output", str(output),
                         *model, "--epochs", "1000", "--batch-size", "4", "--max-length", "32"],
                        subprocess_env(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))

    def recorded():
        if process.popen.poll() is not None:
            raise AssertionError(f"{command} ended early ({process.popen.returncode}):\n{process.output}")
        return TrainingRun.objects.filter(output_dir=str(output.resolve())).first()

    run = wait_until(recorded, timeout=120, interval=0.2, what=f"{command} to record its run")
    assert run.status == TrainingRun.Status.RUNNING
    assert run.heartbeat_at is not None
    time.sleep(1)  # into the model loading and training
    return process, run


@pytest.mark.parametrize("command", ["train_reward_model", "train_dpo"])
def test_a_training_command_stopped_with_sigterm_records_its_run_failed(processes, tiny_files, command):
    process, run = start_training(processes, tiny_files, command, f"{command}-sigterm")
    process.kill(signal.SIGTERM)
    assert process.popen.wait(timeout=60) == 128 + signal.SIGTERM, process.output
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error == "Terminated: stopped by SIGTERM"
    assert run.finished_at is not None


def test_a_training_command_killed_with_sigkill_is_failed_by_the_stale_run_check(processes, tiny_files):
    process, run = start_training(processes, tiny_files, "train_reward_model", "sigkill")
    process.kill(signal.SIGKILL)
    assert process.popen.wait(timeout=30) == -signal.SIGKILL
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # it had no chance to say anything
    # The production check (OASST_TRAINING_STALE_MINUTES) leaves a run silent for seconds alone ...
    assert training_runs_fail_stale(silent_for=timedelta(minutes=settings.TRAINING_STALE_MINUTES)) == 0
    heartbeat = run.heartbeat_at
    time.sleep(1.5)
    # ... and fails it once it has been silent for longer than the limit (a short one here).
    assert training_runs_fail_stale(silent_for=timedelta(seconds=1)) == 1
    run.refresh_from_db()
    assert run.heartbeat_at == heartbeat  # the dead process wrote nothing more
    assert run.status == TrainingRun.Status.FAILED
    assert "no sign of life" in run.error
