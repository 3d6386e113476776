"""Reads of scores and the leaderboard."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, QuerySet

from ranking import scoring
from ranking.models import ContributionEvent, LeaderboardEntry

AROUND = 5


def leaderboard(frame: str) -> QuerySet[LeaderboardEntry]:
    return (LeaderboardEntry.objects.filter(frame=frame).select_related("user").order_by("rank")
            .only("rank", "score", "level", "built_at", "user__username", "user__display_name"))


def leaderboard_ranks(user) -> dict[str, LeaderboardEntry]:
    """The user's entry in each frame where they are ranked."""
    return {entry.frame: entry for entry in LeaderboardEntry.objects.filter(user=user)}


def leaderboard_window(frame: str, rank: int, around: int = AROUND) -> list[LeaderboardEntry]:
    return list(leaderboard(frame).filter(rank__gte=max(1, rank - around), rank__lte=rank + around))


def leaderboard_page(frame: str, *, page: int, size: int) -> list[LeaderboardEntry]:
    """One page, plus one entry to tell whether a next page exists. Ranks run 1..n without gaps,
    so a page is a range of ranks (an index lookup) rather than an OFFSET."""
    start = (page - 1) * size
    return list(leaderboard(frame).filter(rank__gt=start, rank__lte=start + size + 1))


def session_progress(*, user, since: datetime) -> dict[str, int]:
    """Tasks done and points earned since `since` (one aggregate query), counted as a time frame is."""
    counts = dict(
        ContributionEvent.objects.filter(user_id=user.pk, created_at__gte=since)
        .values_list("kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {"tasks": sum(counts.get(kind, 0) for kind in scoring.TASK_EVENTS), "points": scoring.score(counts)}
