"""A Celery worker SIGKILLed in the middle of a job: the job is delivered again (acks_late and the
broker's visibility timeout), a new worker runs it, and running it twice changes nothing."""

import signal
import time
import uuid

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from oasst.celery import app
from ranking import scoring
from ranking.events import event_record
from ranking.jobs import leaderboard_rebuild_job
from ranking.models import LeaderboardEntry
from ranking.services import leaderboard_rebuild
from tests.factories import UserFactory

from .conftest import celery_worker_args, subprocess_env, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.broker, pytest.mark.django_db(transaction=True)]

VISIBILITY_TIMEOUT = 2  # seconds; production keeps the default hour (CELERY_VISIBILITY_TIMEOUT)


def leaderboard(frame: str) -> list[tuple]:
    return list(LeaderboardEntry.objects.filter(frame=frame).order_by("rank")
                .values_list("rank", "user_id", "score", "level"))


def side_connection() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                           password=db["PASSWORD"] or None, dbname=db["NAME"])


def backend_waiting_on_lock(side: psycopg.Connection, table: str) -> int | None:
    row = side.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock' AND query ILIKE %s", (f"%{table}%",)).fetchone()
    return row[0] if row else None


@pytest.fixture
def scored_users(db):
    users = [UserFactory() for _ in range(6)]
    for index, user in enumerate(users):
        for _ in range(index + 1):
            event_record(user_id=user.pk, kind=scoring.RANKING)
    return users


@pytest.fixture
def queue():
    """A queue of this test's own, so no message left by another test reaches its workers."""
    name = f"faults-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(name)
    client.close()


def test_a_job_whose_worker_is_killed_runs_again_on_a_new_worker_and_changes_nothing(
        scored_users, processes, queue):
    leaderboard_rebuild(frame="total")
    single_run = leaderboard("total")
    assert len(single_run) == len(scored_users)
    env = subprocess_env(CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT))
    table = LeaderboardEntry._meta.db_table

    app.conf.task_always_eager = False
    try:
        side = side_connection()
        try:
            # Hold the leaderboard table: the job blocks in its DELETE, in the middle of its transaction.
            side.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            first = processes(celery_worker_args(queue), env)
            first.wait_for_line("ready.", timeout=60)
            result = leaderboard_rebuild_job.apply_async(("total",), queue=queue)
            first.wait_for_line(f"{result.id}] received", timeout=30)
            blocked = wait_until(lambda: backend_waiting_on_lock(side, table), timeout=30,
                                 what="the job to wait on the leaderboard table")
            first.kill(signal.SIGKILL)
            first.popen.wait(timeout=10)
            # The dead worker's session still waits on the lock: end it as PostgreSQL would at its next write.
            side.execute("SELECT pg_terminate_backend(%s)", (blocked,))
            side.rollback()
        finally:
            side.close()
        assert result.state == "PENDING"  # never finished
        killed_at = timezone.now()
        time.sleep(VISIBILITY_TIMEOUT + 0.5)  # the unacknowledged message becomes visible again
        second = processes(celery_worker_args(queue), env)
        assert result.get(timeout=60) == len(scored_users)
    finally:
        app.conf.task_always_eager = True
    second.wait_for_line(f"{result.id}] succeeded", timeout=10)  # the second worker ran it (logged after the result)
    assert leaderboard("total") == single_run
    assert not LeaderboardEntry.objects.filter(frame="total", built_at__lt=killed_at).exists()  # rebuilt after the kill
