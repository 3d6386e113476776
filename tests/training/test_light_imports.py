"""The site runs without the training stack (requirements.txt, `make run`, the web image): the web process and the
default worker import every module they load without torch, transformers, TRL, datasets, peft, accelerate,
matplotlib or safetensors; their pages answer with those libraries blocked; and where a training run, a scoring job or
a training command needs them, it says `make train-deps` instead of crashing."""

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from training.dependencies import TRAINING_MODULES
from training.jobs import replies_rescore_job, replies_score_job
from training.models import TrainingRun

from .tiny_models import write_synthetic_export

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "trl", "datasets", "peft", "accelerate", "matplotlib", "safetensors")

# In a fresh interpreter: refuse the heavy imports (recording each attempt), then load what the web process and a
# default-queue worker load: every view and admin module behind ROOT_URLCONF, the template tags, the Celery app
# with every job it registers.
WEB_PROCESS = f"""
import importlib, sys
HEAVY = {HEAVY!r}
attempts = []

class RefuseHeavy:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            attempts.append(name)
            raise ModuleNotFoundError(f"blocked: the web process imported {{name}}", name=name)
        return None

sys.meta_path.insert(0, RefuseHeavy())
import django
django.setup()
from django.contrib import admin
from django.template.backends.django import get_installed_libraries
from django.urls import URLPattern, URLResolver, get_resolver

admin.autodiscover()

def walk(patterns):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            walk(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            pattern.lookup_str  # imports the view's module

walk(get_resolver().url_patterns)
for module in get_installed_libraries().values():
    importlib.import_module(module)
from oasst.celery import app
app.loader.import_default_modules()
jobs = sorted(app.tasks)
assert "training.replies_score" in jobs and "training.reward_model_train" in jobs, jobs
print(sorted(attempts), sorted(name for name in sys.modules if name.split(".")[0] in HEAVY))
"""


def test_the_web_process_and_default_worker_load_every_module_without_a_heavy_library():
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "oasst.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[] []"


@pytest.fixture
def training_stack_missing(monkeypatch):
    """This process as `make run` leaves it: importing a training module fails and find_spec finds none of them
    (None in sys.modules is how Python marks a module as not importable)."""
    for name in list(sys.modules):
        if name.split(".")[0] in TRAINING_MODULES:
            monkeypatch.setitem(sys.modules, name, None)
    for name in TRAINING_MODULES:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_blocker_makes_the_training_libraries_unimportable(training_stack_missing):
    with pytest.raises(ImportError):
        import torch  # noqa: F401
    with pytest.raises(ImportError):
        from transformers import AutoConfig  # noqa: F401


@pytest.fixture
def export_dir(settings, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    write_synthetic_export(folder / "oasst-trees-2026-11-25.jsonl", trees=4, seed=3)
    settings.EXPORT_DIR = str(folder)
    return folder


LAUNCH = "/admin/training/trainingrun/add/"
NEEDS_DEPS = "the training dependencies are not installed"


@pytest.mark.django_db
def test_the_pages_answer_without_the_training_stack(admin_client, export_dir, training_stack_missing):
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.FAILED,
                                     data_file=str(export_dir / "oasst-trees-2026-11-25.jsonl"), parameters={})
    pages = ["/", "/admin/", "/admin/training/trainingrun/", f"/admin/training/trainingrun/{run.pk}/change/",
             "/api/v1/schema/", "/leaderboard/"]
    pages += [f"{LAUNCH}?kind={kind}" for kind in ("reward_model", "ppo", "dpo", "sft")]
    for page in pages:
        response = admin_client.get(page, follow=True)
        assert response.status_code == 200, page


@pytest.mark.django_db
def test_the_launch_page_says_before_launching_that_this_process_cannot_train(admin_client, export_dir,
                                                                            training_stack_missing):
    page = admin_client.get(LAUNCH).content.decode()
    assert NEEDS_DEPS in page and "make train-deps" in page and "missing: torch" in page


@pytest.mark.django_db
def test_with_the_training_stack_or_a_broker_the_launch_page_has_no_such_warning(admin_client, export_dir,
                                                                                 settings, monkeypatch):
    assert NEEDS_DEPS not in admin_client.get(LAUNCH).content.decode()
    for name in TRAINING_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    settings.CELERY_TASK_ALWAYS_EAGER = False  # a worker elsewhere trains: this web process need not
    assert NEEDS_DEPS not in admin_client.get(LAUNCH).content.decode()


@pytest.mark.django_db
def test_a_run_launched_without_the_training_stack_ends_failed_saying_make_train_deps(
    admin_client, export_dir, training_stack_missing, django_capture_on_commit_callbacks
):
    form = {"data_file": "oasst-trees-2026-11-25.jsonl", "base_model": "", "epochs": "1", "lr": "0.001",
            "batch_size": "4"}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(LAUNCH, form)
    run = TrainingRun.objects.get(launched_by__isnull=False)
    assert response.status_code == 302 and response["Location"].endswith(f"/{run.pk}/change/")
    assert run.status == TrainingRun.Status.FAILED and run.finished_at is not None
    assert run.error.startswith(NEEDS_DEPS) and "make train-deps" in run.error and "torch" in run.error
    assert run.parameters["base_model"] is None  # blank: the worker resolves the MiniLM backbone
    assert admin_client.get(f"/admin/training/trainingrun/{run.pk}/change/").status_code == 200


@pytest.mark.django_db
def test_the_scoring_jobs_without_the_training_stack_score_nothing_and_say_why(training_stack_missing, caplog):
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED,
                                     in_service=True, data_file="x", parameters={})
    with caplog.at_level(logging.WARNING, logger="training.jobs"):
        assert replies_score_job([str(uuid.uuid4())]) == 0
        assert replies_rescore_job(run.pk) == 0
    assert sum("make train-deps" in record.getMessage() for record in caplog.records) == 2


COMMANDS = {
    "train_reward_model": ["--data", "{export}", "--output", "{out}"],
    "train_sft": ["--data", "{export}", "--output", "{out}"],
    "train_dpo": ["--data", "{export}", "--output", "{out}"],
    "train_ppo": ["--reward-model", "{out}", "--prompts", "{export}", "--output", "{out}"],
    "score_messages": ["--reward-model", "{out}"],
    "evaluate_reward_model": ["--model", "{out}", "--data", "{export}"],
    "rlhf_report": ["--policy", "{out}", "--reward-model", "{out}", "--prompts", "{export}", "--output", "{out}"],
    "prepare_base_models": ["--models-dir", "{out}"],
}


@pytest.mark.django_db
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_training_command_without_the_training_stack_names_make_train_deps(command, export_dir, tmp_path,
                                                                            training_stack_missing):
    out = tmp_path / "out"
    arguments = [argument.format(export=export_dir / "oasst-trees-2026-11-25.jsonl", out=out)
                 for argument in COMMANDS[command]]
    with pytest.raises(CommandError, match=r"the training dependencies are not installed .*make train-deps"):
        call_command(command, *arguments)
    assert not out.exists() and not TrainingRun.objects.exists()
