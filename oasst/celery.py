"""The Celery app. Jobs live in each app's jobs.py (tasks/ already means crowdsourcing tasks)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")

app = Celery("oasst")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")
