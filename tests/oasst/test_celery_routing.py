"""Celery routing: each job goes to its queue by its exact name. Training runs take hours on the `training`
queue; scoring replies with the reward model in service has its own `scoring` queue, so it never waits behind a
run; everything else, the sweeps that watch those runs included, runs on `default`."""

import inspect
import re
from pathlib import Path

import pytest
from django.conf import settings

from oasst.celery import app
from training.jobs import TRAINING_JOBS
from training.services import TRAINING_JOB_NAMES

TRAINING_RUN_JOBS = {
    "training.reward_model_train", "training.ppo_train", "training.dpo_train", "training.sft_train",
    "training.reward_model_challenge",
}
# Scheduled, yet a training run: the weekly champion / challenger trains a reward model.
SCHEDULED_TRAINING_JOBS = {"training.reward_model_challenge"}
ROOT = Path(__file__).resolve().parents[2]
SCORING_JOBS = {"training.replies_score", "training.replies_rescore"}
# Renamed jobs answer to their former names: messages queued and beat rows saved before the rename still run.
FORMER_NAMES = {
    "training.train_reward_model": "training.reward_model_train",
    "training.train_ppo": "training.ppo_train",
    "training.train_dpo": "training.dpo_train",
    "training.train_sft": "training.sft_train",
    "training.fail_stale_runs": "training.runs_fail_stale",
    "oasst.resend_unsent_training_runs": "training.runs_resend_unsent",
    "tasks.expire_tasks": "tasks.tasks_expire",
    "tasks.nightly_export": "tasks.nightly_export_write",
}


def queue_of(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


@pytest.fixture(scope="module")
def registered_jobs() -> set[str]:
    app.autodiscover_tasks(related_name="jobs", force=True)  # what a worker does at startup
    return {name for name in app.tasks if not name.startswith("celery.")}


def test_every_scheduled_job_runs_on_the_default_queue():
    scheduled = {entry["task"] for entry in (*settings.CELERY_BEAT_SCHEDULE.values(),
                                             *settings.EMBEDDED_SCHEDULE.values())}
    assert {"training.runs_fail_stale", "training.runs_resend_unsent"} <= scheduled
    assert SCHEDULED_TRAINING_JOBS <= scheduled
    assert {name: queue_of(name) for name in scheduled} == {
        name: "training" if name in SCHEDULED_TRAINING_JOBS else "default" for name in scheduled}


def test_the_stale_run_sweep_does_not_wait_behind_a_training_run():
    assert queue_of("training.runs_fail_stale") == "default"
    assert queue_of("training.runs_resend_unsent") == "default"


def test_every_registered_job_runs_on_its_queue(registered_jobs):
    def expected_queue(name: str) -> str:
        name = FORMER_NAMES.get(name, name)
        return "training" if name in TRAINING_RUN_JOBS else "scoring" if name in SCORING_JOBS else "default"

    expected = {name: expected_queue(name) for name in registered_jobs}
    assert SCORING_JOBS <= registered_jobs
    assert {name: queue_of(name) for name in registered_jobs} == expected
    assert {job.name for job in TRAINING_JOBS.values()} == TRAINING_RUN_JOBS
    assert {kind: job.name for kind, job in TRAINING_JOBS.items()} == TRAINING_JOB_NAMES


def test_routes_name_jobs_exactly_not_by_pattern():
    assert all("*" not in name for name in settings.CELERY_TASK_ROUTES)
    assert queue_of("training.a_job_not_listed") == "default"


def test_a_renamed_job_still_runs_under_its_former_name(registered_jobs):
    for former, name in FORMER_NAMES.items():
        assert {former, name} <= registered_jobs
        # the same function; Sentry's Celery integration (SENTRY_DSN) wraps each task's run in a wrapper of its own
        assert inspect.unwrap(app.tasks[former].run) is inspect.unwrap(app.tasks[name].run)


def test_every_scheduled_job_is_named_noun_verb_without_a_former_name():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert not scheduled & set(FORMER_NAMES)


def test_an_accepted_reply_is_not_scored_behind_a_training_run():
    assert {queue_of(name) for name in SCORING_JOBS} == {"scoring"}
    assert not {queue_of(name) for name in TRAINING_RUN_JOBS} & {"scoring"}


def test_every_queue_has_a_worker_in_the_deployment_and_in_make_worker():
    """docker-compose.yml runs a worker per queue; `make worker` (one local worker) consumes them all."""
    queues = {"default"} | {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert queues == {"default", "training", "scoring"}
    services = re.split(r"^  ([\w-]+):\n", (ROOT / "docker-compose.yml").read_text().split("\nservices:\n")[1],
                        flags=re.MULTILINE)[1:]
    consumed = {service: set(found.group(1).split(","))
                for service, block in zip(services[::2], services[1::2], strict=True)
                if (found := re.search(r'"worker".*?"--queues", "([^"]+)"', block, re.DOTALL))}
    assert consumed == {"worker": {"default"}, "training-worker": {"training"}, "scoring-worker": {"scoring"}}
    make_worker = re.search(r"^worker:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert set(re.search(r"--queues (\S+)", make_worker).group(1).split(",")) == queues
