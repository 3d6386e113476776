"""Recording contribution events: the ledger points are counted from. The tasks services record
them here as contributions happen (tasks is above ranking)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from ranking import scoring
from ranking.models import ContributionEvent

ACTIVITY_RESOLUTION = timedelta(minutes=1)


def event_record(*, user_id: int | None, kind: str, message_id=None, at: datetime | None = None) -> None:
    if user_id is None:
        return  # an imported or anonymised author earns nothing
    ContributionEvent.objects.create(user_id=user_id, kind=kind, message_id=message_id, created_at=at or timezone.now())


def events_record(rows: list[tuple[int | None, str, object]], *, at: datetime | None = None) -> int:
    """Several events at once: (user id, kind, message id) each."""
    at = at or timezone.now()
    events = [ContributionEvent(user_id=user_id, kind=kind, message_id=message_id, created_at=at)
              for user_id, kind, message_id in rows if user_id is not None]
    ContributionEvent.objects.bulk_create(events)
    return len(events)


def streak_record(*, user, now: datetime) -> None:
    """Update a user's streak and last activity after a contribution: one UPDATE, and none when
    nothing changed within the last minute."""
    days, last_day = scoring.streak_after_activity(
        streak_days=user.streak_days, streak_last_day_at=user.streak_last_day_at,
        last_activity_at=user.last_activity_at, now=now)
    fresh = user.last_activity_at is not None and now - user.last_activity_at < ACTIVITY_RESOLUTION
    if fresh and (days, last_day) == (user.streak_days, user.streak_last_day_at):
        return
    user.streak_days, user.streak_last_day_at, user.last_activity_at = days, last_day, now
    get_user_model().objects.filter(pk=user.pk).update(streak_days=days, streak_last_day_at=last_day,
                                                       last_activity_at=now)
