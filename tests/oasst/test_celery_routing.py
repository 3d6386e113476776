"""Celery routing: each job goes to its queue by its exact name. Training runs take hours on the `training`
queue; everything else, the sweeps that watch those runs included, runs on `default`."""

import pytest
from django.conf import settings

from oasst.celery import app
from training.jobs import TRAINING_JOBS
from training.services import TRAINING_JOB_NAMES

TRAINING_RUN_JOBS = {
    "training.reward_model_train", "training.ppo_train", "training.dpo_train", "training.sft_train",
}
# Scoring with the reward model in service loads torch: the training worker's queue too.
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
    assert {name: queue_of(name) for name in scheduled} == {name: "default" for name in scheduled}


def test_the_stale_run_sweep_does_not_wait_behind_a_training_run():
    assert queue_of("training.runs_fail_stale") == "default"
    assert queue_of("training.runs_resend_unsent") == "default"


def test_every_registered_job_runs_on_its_queue(registered_jobs):
    expected = {name: "training" if FORMER_NAMES.get(name, name) in TRAINING_RUN_JOBS | SCORING_JOBS else "default"
                for name in registered_jobs}
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
        assert app.tasks[former].run is app.tasks[name].run


def test_every_scheduled_job_is_named_noun_verb_without_a_former_name():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert not scheduled & set(FORMER_NAMES)
