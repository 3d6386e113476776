"""OASST project package: settings, URLs, the Celery app and users."""

from oasst.celery import app as celery_app

__all__ = ("celery_app",)
