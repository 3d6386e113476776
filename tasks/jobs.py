"""Celery jobs of the tasks app: thin wrappers around its services."""

from celery import shared_task

from oasst.languages import LANGUAGES
from tasks import services
from tasks.models import MessageTree, TreeState


@shared_task(name="tasks.expire_tasks")
def tasks_expire_job() -> int:
    return services.tasks_expire()


@shared_task(name="tasks.lottery_activate")
def lottery_activate_job() -> int:
    """Catch up on prompt activation for every language with waiting prompts."""
    langs = (MessageTree.objects.filter(state=TreeState.PROMPT_LOTTERY_WAITING)
             .values_list("lang", flat=True).distinct())
    return sum(len(services.lottery_activate(lang=lang)) for lang in langs if lang in LANGUAGES)


@shared_task(name="tasks.nightly_export")
def nightly_export_job() -> str:
    from django.conf import settings

    from tasks.export import nightly_export

    return nightly_export(folder=settings.EXPORT_DIR, keep=settings.EXPORT_KEEP).path
