"""Reads of scores and the leaderboard."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from ranking import scoring
from ranking.models import ContributionEvent, LeaderboardEntry, Ranking, UserScore

AROUND = 5


def user_scores(*, user, now=None) -> dict[str, UserScore]:
    """One user's points in every time frame, counted from the ledger in one aggregate query and not stored:
    pages read these (a GET writes nothing); ranking.services.user_scores_refresh stores them."""
    now = now or timezone.now()
    windows = {frame: Count("id", filter=Q(created_at__gte=now - span)) if span else Count("id")
               for frame, span in scoring.FRAMES.items()}
    per_kind = ContributionEvent.objects.filter(user_id=user.pk).values("kind").annotate(**windows).order_by()
    counts: dict[str, dict[str, int]] = {frame: {} for frame in scoring.FRAMES}
    for row in per_kind:
        for frame in scoring.FRAMES:
            if row[frame]:
                counts[frame][row["kind"]] = row[frame]
    scores = {}
    for frame in scoring.FRAMES:
        points = scoring.breakdown(counts[frame])
        scores[frame] = UserScore(user_id=user.pk, frame=frame, counts=counts[frame],
                                  breakdown={kind: p for kind, p in points.items() if p},
                                  score=sum(points.values()), updated_at=now)
    return scores


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


def user_data_sections(sender=None, *, user, **kwargs) -> dict:
    """The ranking app's part of "download my data" (receiver of oasst.signals.user_data_requested,
    connected in ranking.apps): the user's rankings, scores, contribution events, leaderboard rows."""
    return {
        "rankings": list(Ranking.objects.filter(user=user).order_by("created_at").values(
            "parent_id", "task_id", "ranking", "not_rankable", "agreement", "created_at")),
        "scores": {score["frame"]: {k: v for k, v in score.items() if k != "frame"}
                   for score in UserScore.objects.filter(user=user).values(
                       "frame", "score", "counts", "breakdown", "updated_at")},
        "contribution_events": list(ContributionEvent.objects.filter(user=user).order_by("created_at", "pk").values(
            "kind", "message_id", "created_at")),
        "leaderboard": list(LeaderboardEntry.objects.filter(user=user).order_by("frame").values(
            "frame", "rank", "score", "level", "built_at")),
    }
