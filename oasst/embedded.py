"""The embedded default's stand-in for Celery beat and the training worker.

With no broker Celery runs each job eagerly, inside the request that sends it, and no beat runs. So
`manage.py runserver` starts this worker in its server process when Celery is eager: a scheduler thread
runs the beat schedule (settings.CELERY_BEAT_SCHEDULE, except the jobs an admin paused and those in
settings.EMBEDDED_SKIPPED: the weekly champion / challenger unless OASST_CHALLENGER_EMBEDDED) and the embedded
schedule (settings.EMBEDDED_SCHEDULE: the leaderboards rebuilt soon after new points), and a job thread
runs the long jobs handed to it (training runs), so the request that launched one returns at once.
With a broker, beat and the workers do all of this and nothing here starts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from celery.schedules import maybe_schedule
from django.conf import settings
from django.db import connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from oasst.celery import app

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class EmbeddedWorker:
    def __init__(self, *, tick_seconds: float = TICK_SECONDS):
        self.tick_seconds = tick_seconds
        self._stopping = threading.Event()
        self._jobs: queue.Queue = queue.Queue()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._last_run: dict[str, object] = {}
        self._threads = [
            threading.Thread(target=self._schedule_loop, name="embedded-beat", daemon=True),
            threading.Thread(target=self._job_loop, name="embedded-jobs", daemon=True),
        ]

    def start(self) -> EmbeddedWorker:
        app.loader.import_default_modules()  # every app's jobs.py: the scheduled jobs are known by name
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, *, seconds: float = 10) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(seconds)

    def submit(self, job, *args) -> None:
        with self._busy_lock:
            self._busy += 1
        self._jobs.put((job, args))

    def idle(self, *, seconds: float) -> bool:
        """Whether every job handed over has finished, waiting up to `seconds`."""
        deadline = time.monotonic() + seconds
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._busy

    def _schedule_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # a failing job is logged; the schedule goes on
                logger.exception("embedded scheduler tick failed")
            finally:
                connections.close_all()
            self._stopping.wait(self.tick_seconds)

    def tick(self) -> None:
        """Run each scheduled job that is due and not paused, the way beat would send it."""
        now = timezone.now()
        entries = {**{name: entry for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
                      if name not in settings.EMBEDDED_SKIPPED}, **settings.EMBEDDED_SCHEDULE}
        due = []
        for name, entry in entries.items():
            last_run = self._last_run.setdefault(name, now)
            is_due, _ = maybe_schedule(entry["schedule"], app=app).is_due(last_run)
            if is_due:
                due.append(name)
        if not due:
            return
        paused = set(PeriodicTask.objects.filter(name__in=due, enabled=False).values_list("name", flat=True))
        for name in due:
            self._last_run[name] = now
            if name in paused:
                continue
            entry = entries[name]
            app.tasks[entry["task"]].apply(args=entry.get("args", ()), kwargs=entry.get("kwargs", {}))

    def _job_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job, args = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                job.apply(args=args)
            except Exception:  # the job records its own failure (a training run ends failed)
                logger.exception("embedded job %s%r failed", job.name, args)
            finally:
                connections.close_all()
                with self._busy_lock:
                    self._busy -= 1


_worker: EmbeddedWorker | None = None


def start() -> EmbeddedWorker | None:
    """Start the embedded worker when Celery is eager (no broker); with a broker, beat and workers run the jobs."""
    global _worker
    if not settings.CELERY_TASK_ALWAYS_EAGER or _worker is not None:
        return _worker
    _worker = EmbeddedWorker().start()
    logger.info("embedded worker started: the beat schedule and training jobs run in this process")
    return _worker


def stop() -> None:
    global _worker
    if _worker is not None:
        _worker.stop()
        _worker = None


def running() -> EmbeddedWorker | None:
    return _worker


def run_in_background(job, *args) -> bool:
    """Hand job(*args) to the embedded worker's job thread; False when none runs (tests, commands, a broker)."""
    if _worker is None:
        return False
    _worker.submit(job, *args)
    return True
