"""The embedded default (no broker, Celery eager, no beat): `manage.py runserver` starts the embedded worker,
which keeps the promises beat keeps in production (new points reach the leaderboard, scheduled jobs run)
and runs training jobs off the request; with a broker it starts nothing, so beat's jobs never run twice."""

import threading
import time

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.core.management.commands.runserver import Command as DjangoRunserverCommand
from django_celery_beat.models import PeriodicTask

from oasst import embedded
from oasst.management.commands.runserver import Command as RunserverCommand
from oasst.schedule import beat_schedule_mirror
from ranking.models import LeaderboardEntry
from tests.factories import UserFactory
from tests.tasks import builders

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, *, seconds: float) -> float:
    """Seconds it took until condition() held; fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def fast_schedule(settings):
    """The embedded schedule, shortened so the test need not wait the real interval (checked below)."""
    settings.EMBEDDED_SCHEDULE = {
        name: {**entry, "schedule": 0.2} for name, entry in settings.EMBEDDED_SCHEDULE.items()
    }


@pytest.fixture
def runserver(monkeypatch):
    """runserver's start-up in this process, without serving: the embedded worker it starts, or None."""
    monkeypatch.setattr(DjangoRunserverCommand, "inner_run", lambda self, *args, **options: None)
    RunserverCommand().inner_run()
    yield embedded.running()
    embedded.stop()


def test_new_points_are_promised_on_the_leaderboard_within_a_minute():
    leaderboard = [
        entry
        for entry in django_settings.EMBEDDED_SCHEDULE.values()
        if entry["task"] == "ranking.leaderboards_rebuild_after_new_events"
    ]
    assert leaderboard and leaderboard[0]["schedule"] <= 30  # seconds: a tick of the worker and the rebuild fit in 60


def test_under_the_embedded_default_a_new_contributors_points_reach_the_leaderboard(fast_schedule, runserver, client):
    assert runserver is not None, "runserver started no embedded worker although Celery is eager"
    newcomer = UserFactory(username="newcomer", display_name="Newcomer")
    prompt = builders.write_prompt(UserFactory(), text="Why is the sky blue at noon and red at dusk?")
    builders.review_of(newcomer, prompt)  # a review earns points (a prompt alone earns less than one)
    waited = wait_for(lambda: LeaderboardEntry.objects.filter(user=newcomer).exists(), seconds=10)
    assert waited < 10
    client.force_login(newcomer)
    page = client.get("/leaderboard/day/").content.decode()
    assert "You have no points in this time frame yet" not in page and "Newcomer" in page


def test_the_embedded_worker_runs_the_beat_schedule_but_not_a_job_an_admin_paused(settings, runserver, monkeypatch):
    from oasst.celery import app

    beat_schedule_mirror()  # into django-celery-beat's tables, where an admin pauses a job
    ran = []
    for name in ("tasks.tasks_expire", "tasks.lottery_activate"):
        monkeypatch.setattr(app.tasks[name], "run", lambda *args, name=name: ran.append(name))
    PeriodicTask.objects.filter(name="lottery-activate").update(enabled=False)
    settings.CELERY_BEAT_SCHEDULE = {
        "tasks-expire": {**settings.CELERY_BEAT_SCHEDULE["tasks-expire"], "schedule": 0.2},
        "lottery-activate": {**settings.CELERY_BEAT_SCHEDULE["lottery-activate"], "schedule": 0.2},
    }
    wait_for(lambda: "tasks.tasks_expire" in ran, seconds=10)
    assert "tasks.lottery_activate" not in ran


def test_with_a_broker_runserver_starts_no_embedded_worker_so_beats_jobs_do_not_run_twice(settings, runserver):
    embedded.stop()
    settings.CELERY_TASK_ALWAYS_EAGER = False
    RunserverCommand().inner_run()
    assert embedded.running() is None


def test_under_the_embedded_default_a_training_launch_returns_before_the_run_trains(
    settings, tmp_path, runserver, client, monkeypatch
):
    from tests.training.tiny_models import write_synthetic_export
    from training.jobs import TRAINING_JOBS
    from training.models import TrainingRun

    settings.EXPORT_DIR = str(tmp_path)
    write_synthetic_export(tmp_path / "oasst-trees.jsonl", trees=4, seed=3)
    job = TRAINING_JOBS[TrainingRun.Kind.REWARD_MODEL]
    release = threading.Event()
    monkeypatch.setattr(job, "run", lambda run_id: release.wait(10) and "trained")
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="launch_run", content_type__app_label="training"))
    client.force_login(staff)
    started = time.monotonic()
    response = client.post(
        "/admin/training/trainingrun/add/",
        {"data_file": "oasst-trees.jsonl", "epochs": "1", "lr": "0.001", "batch_size": "4"},
    )
    assert response.status_code == 302 and time.monotonic() - started < 5
    assert not release.is_set()  # the job is still waiting on the worker's thread: the request did not run it
    release.set()
    assert runserver.idle(seconds=10)
