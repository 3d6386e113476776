"""`torchrun --nproc_per_node 2 manage.py train_ppo` on the CPU: gloo, two processes, the same outputs as one."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .tiny_models import TINY_PPO

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

REPO = Path(__file__).resolve().parents[2]


def manage(*args: str, env: dict, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [*(launcher or [sys.executable]), "manage.py", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def two_processes(marker_reward_model, synthetic_export, tiny_gpt2, tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchrun")
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite3'}"
    migrate = manage("migrate", "--noinput", "-v0", env=env)
    assert migrate.returncode == 0, migrate.stderr
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    options = {**TINY_PPO, "steps": 4, "eval_every": 2, "checkpoint_every": 2}
    result = manage(
        "train_ppo",
        "--reward-model", str(marker_reward_model),
        "--prompts", str(synthetic_export),
        "--policy", str(tiny_gpt2),
        "--output", str(folder / "policy"),
        *(item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", str(value))),
        env=env,
        launcher=[torchrun, "--standalone", "--nproc_per_node", "2"],
    )
    return folder, result


def test_two_processes_train_in_step_and_write_one_output_folder(two_processes):
    folder, result = two_processes
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((folder / "policy" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["processes_in_sync"] is True
    assert [row["step"] for row in metrics["steps"]] == [1, 2, 3, 4]
    assert (folder / "policy" / "model.safetensors").is_file()
    assert (folder / "policy" / "checkpoints" / "step-000002" / "state.json").is_file()
    assert result.stdout.count("PPO policy written") == 1  # process 0 alone reports and writes


def test_the_results_have_the_shape_of_a_single_process_run(two_processes, ppo_run):
    folder, _ = two_processes
    distributed = json.loads((folder / "policy" / "metrics.json").read_text())
    single = json.loads((ppo_run[0] / "metrics.json").read_text())
    assert distributed.keys() == single.keys()
    assert distributed["steps"][0].keys() == single["steps"][0].keys()
    assert distributed["data"] == single["data"]
    assert distributed["held_out_reward"]["before"] == pytest.approx(single["held_out_reward"]["before"], abs=1e-4)


def test_process_zero_alone_records_the_training_run(two_processes):
    folder, _ = two_processes
    with sqlite3.connect(folder / "db.sqlite3") as connection:
        rows = connection.execute("SELECT kind, status, progress FROM training_trainingrun").fetchall()
    assert rows == [("ppo", "succeeded", 100)]
