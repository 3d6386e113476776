"""Periodic housekeeping jobs of the project package."""

from celery import shared_task
from django.contrib.sessions.models import Session
from django.utils import timezone


@shared_task(name="oasst.sessions_clear")
def sessions_clear_job() -> int:
    """Delete expired sessions; returns how many were removed."""
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
