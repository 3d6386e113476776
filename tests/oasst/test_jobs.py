"""Celery: the beat schedule lives in code and is mirrored into the admin's tables; jobs run
through a real broker and worker when one is configured."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from oasst.jobs import sessions_clear_job
from oasst.schedule import beat_schedule_mirror


@pytest.mark.django_db
def test_every_scheduled_job_is_mirrored_after_migrate():
    mirrored = dict(PeriodicTask.objects.values_list("name", "task"))
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert mirrored[name] == entry["task"]


@pytest.mark.django_db
def test_every_scheduled_job_names_a_registered_task():
    from oasst.celery import app

    app.autodiscover_tasks(related_name="jobs", force=True)  # what a worker does at startup
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks


@pytest.mark.django_db
def test_mirroring_again_keeps_a_job_an_admin_paused(settings):
    PeriodicTask.objects.filter(name="sessions-clear").update(enabled=False)
    settings.CELERY_BEAT_SCHEDULE = {"sessions-clear": {"task": "oasst.sessions_clear", "schedule": 60.0}}
    beat_schedule_mirror()
    task = PeriodicTask.objects.get(name="sessions-clear")
    assert task.enabled is False
    assert task.interval.every == 60


def make_session(expires_in: timedelta) -> str:
    store = SessionStore()
    store["x"] = 1
    store.create()
    Session.objects.filter(pk=store.session_key).update(expire_date=timezone.now() + expires_in)
    return store.session_key


@pytest.mark.django_db
def test_sessions_clear_job_deletes_only_expired_sessions():
    old = make_session(timedelta(days=-1))
    live = make_session(timedelta(days=1))
    assert sessions_clear_job.delay().get() == 1
    assert list(Session.objects.values_list("pk", flat=True)) == [live]
    assert old != live


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_job_runs_through_the_real_broker_and_a_worker():
    from celery.contrib.testing.worker import start_worker

    from oasst.celery import app

    make_session(timedelta(days=-1))
    app.conf.task_always_eager = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            result = sessions_clear_job.delay()
            assert result.get(timeout=30) == 1
    finally:
        app.conf.task_always_eager = True
    assert not Session.objects.exists()
