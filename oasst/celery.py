"""The Celery app. Jobs live in each app's jobs.py (tasks/ already means crowdsourcing tasks); each job is routed
by its explicit name (settings.CELERY_TASK_ROUTES), never by a name pattern. Sending jobs: oasst.enqueue."""

import os

from celery import Celery, shared_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")

app = Celery("oasst")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")


def job(name: str, *, former_name: str | None = None):
    """@shared_task(name=name). A renamed job also answers to its former name: messages queued under it
    (a training run waiting hours in its queue, or redelivered after a worker died) still run; beat's rows
    take the new name from settings.CELERY_BEAT_SCHEDULE on the next migrate (oasst.schedule) or beat start."""

    def register(function):
        if former_name is not None:
            shared_task(name=former_name)(function)
        return shared_task(name=name)(function)

    return register
