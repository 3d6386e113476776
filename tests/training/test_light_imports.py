"""The web process and the Celery worker's start-up import the training app without its heavy libraries: the admin's
launch forms read the configs (PPOConfig, RewardTrainingConfig, ...), the jobs module names the training functions,
and torch, transformers, TRL, datasets, peft and matplotlib load only inside a training run."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "trl", "datasets", "peft", "matplotlib", "safetensors")
LIGHT_PATH = ("training.admin", "training.jobs", "training.services", "training.ppo", "training.ppo_config")


def test_django_setup_and_the_training_admin_and_jobs_import_no_heavy_library():
    script = (
        "import importlib, sys, django\n"
        "django.setup()\n"
        f"for name in {LIGHT_PATH!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "oasst.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
