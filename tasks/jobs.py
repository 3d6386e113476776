"""Celery jobs of the tasks app: thin wrappers around its services."""

from celery import shared_task
from django.conf import settings

from oasst.celery import job
from oasst.languages import LANGUAGES
from tasks import services
from tasks.export import nightly_export
from tasks.models import MessageTree, TreeState

# Defined beside the services that enqueue them (tasks.services.queue, tasks.scoring), which
# this module cannot be imported by without a cycle; named here for Celery's autodiscovery.
from tasks.scoring import scoring_retry_job, tree_score_job
from tasks.services.queue import tasks_expire_job

__all__ = ["lottery_activate_job", "nightly_export_write_job", "scoring_retry_job", "tasks_expire_job",
           "tree_score_job"]


@shared_task(name="tasks.lottery_activate")
def lottery_activate_job() -> int:
    """Catch up on prompt activation for every language with waiting prompts."""
    langs = (MessageTree.objects.filter(state=TreeState.PROMPT_LOTTERY_WAITING)
             .values_list("lang", flat=True).distinct())
    return sum(len(services.lottery_activate(lang=lang)) for lang in langs if lang in LANGUAGES)


@job("tasks.nightly_export_write", former_name="tasks.nightly_export")
def nightly_export_write_job() -> str:
    return nightly_export(folder=settings.EXPORT_DIR, keep=settings.EXPORT_KEEP).path
