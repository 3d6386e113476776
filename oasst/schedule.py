"""Mirror of the beat schedule defined in code (settings.CELERY_BEAT_SCHEDULE) into
django-celery-beat's tables, so admins can see and pause each job.

Mirroring updates each entry's schedule and arguments but never its `enabled` flag,
so a job an admin paused stays paused. Beat's DatabaseScheduler does the same at startup.
"""

import logging

from django.conf import settings
from django.db import transaction
from django_celery_beat.schedulers import ModelEntry

logger = logging.getLogger(__name__)


@transaction.atomic
def beat_schedule_mirror() -> list[str]:
    names = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        ModelEntry.from_entry(name, **entry)
        names.append(name)
    return names


def beat_schedule_mirror_after_migrate(**kwargs) -> None:
    names = beat_schedule_mirror()
    if kwargs.get("verbosity", 1) >= 2:
        logger.info("beat schedule mirrored: %s", ", ".join(names))
