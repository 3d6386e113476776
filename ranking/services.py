"""Writers of rankings and their results (consensus, agreement), scores and the leaderboard. Scoring a
tree (the replies' ranks, the tree's state) is tasks.scoring, which calls tree_consensus_record."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext

from oasst.errors import Conflict
from ranking import consensus, scoring
from ranking.models import ContributionEvent, Frame, LeaderboardEntry, Ranking, RankingResult, UserScore
from ranking.selectors import user_scores

logger = logging.getLogger(__name__)
User = get_user_model()


@transaction.atomic
def ranking_create(*, parent_id, user, task, order: list[str], not_rankable: bool) -> Ranking:
    """Store one user's ranking of a parent's replies (tasks checks the task and the order first)."""
    try:  # the unique constraint refuses a second ranking; the whole transaction is then rolled back
        return Ranking.objects.create(parent_id=parent_id, user=user, task=task, ranking=order,
                                      not_rankable=not_rankable)
    except IntegrityError:
        raise Conflict(gettext("You already ranked these replies."), code="already_ranked") from None


def tree_consensus_record(*, tree_id, good_tau: float) -> dict:
    """For each parent ranked in a tree: the consensus of its complete rankings (RankingResult), each
    ranking's agreement with it, and the good-ranking events it earns. Returns
    {parent id: (consensus order of reply ids, [(user id, kind, parent id), ...])} in the order the
    parents were first ranked. The caller (tasks.scoring) holds the tree's lock and writes the
    replies' ranks."""
    by_parent: dict = {}
    for ranking in Ranking.objects.filter(parent__tree_id=tree_id).order_by("created_at"):
        by_parent.setdefault(ranking.parent_id, []).append(ranking)
    result = {}
    for parent_id, rankings in by_parent.items():
        complete = [r for r in rankings if not r.not_rankable]
        orders = [r.ranking for r in complete]
        order = consensus.ranked_pairs(orders)
        RankingResult.objects.update_or_create(parent_id=parent_id, defaults={
            "consensus": order, "rankings": len(complete), "not_rankable": len(rankings) - len(complete),
            "agreement": consensus.kendalls_w(orders),
        })
        events = []
        for ranking in complete:
            ranking.agreement = consensus.kendall_tau(ranking.ranking, order)
            if ranking.agreement >= good_tau:
                events.append((ranking.user_id, scoring.GOOD_RANKING, parent_id))
        Ranking.objects.bulk_update(complete, ["agreement"])
        result[parent_id] = (order, events)
    return result


# --- Scores --------------------------------------------------------------------------------------


def user_scores_refresh(*, user, now=None) -> dict[str, UserScore]:
    """Recount one user's points in every time frame and store them (one aggregate query, one upsert)."""
    scores = user_scores(user=user, now=now)
    UserScore.objects.bulk_create(scores.values(), update_conflicts=True, unique_fields=["user", "frame"],
                                  update_fields=["counts", "breakdown", "score", "updated_at"])
    return scores


def _frame_scores(frame: str, now) -> list[tuple[int, int]]:
    """(user id, points) of every user with points in the frame."""
    span = scoring.FRAMES[frame]
    events = ContributionEvent.objects.all()
    if span:
        events = events.filter(created_at__gte=now - span)
    rows = events.values("user_id").annotate(**{kind: Count("id", filter=Q(kind=kind)) for kind in scoring.KINDS})
    result = []
    for row in rows.order_by():
        points = scoring.score(row)
        if points > 0:
            result.append((row["user_id"], points))
    return result


def leaderboard_rebuild(*, frame: str, now=None) -> int:
    """Rebuild one frame's leaderboard in one transaction; hidden and banned users are not ranked.
    Returns the number of ranked users."""
    now = now or timezone.now()
    scores = _frame_scores(frame, now)
    excluded = set(User.objects.filter(Q(show_on_leaderboard=False) | Q(is_banned=True) | Q(is_active=False))
                   .values_list("pk", flat=True))
    ranked = sorted(((points, user_id) for user_id, points in scores if user_id not in excluded),
                    key=lambda entry: (-entry[0], entry[1]))
    rows = [(frame, rank, user_id, points, scoring.level(points), now)
            for rank, (points, user_id) in enumerate(ranked, start=1)]
    with transaction.atomic():
        LeaderboardEntry.objects.filter(frame=frame).delete()
        if connection.vendor == "postgresql":
            table = LeaderboardEntry._meta.db_table
            columns = "frame, rank, user_id, score, level, built_at"
            with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:  # COPY: 100,000 rows in well under a second
                    copy.write_row(row)
        else:
            LeaderboardEntry.objects.bulk_create(
                [LeaderboardEntry(frame=f, rank=r, user_id=u, score=s, level=lv, built_at=b) for f, r, u, s, lv, b
                 in rows], batch_size=2000)
    return len(rows)


LEADERBOARDS_BUILT_FOR_EVENT = "ranking:leaderboards-built-for-event"


def leaderboards_rebuild_after_new_events() -> bool:
    """Rebuild every frame's leaderboard when contributions were recorded since the last such rebuild
    (the embedded default's stand-in for beat's rebuilds). Returns whether it rebuilt."""
    last_event = ContributionEvent.objects.aggregate(last=Max("pk"))["last"]
    if last_event is None or cache.get(LEADERBOARDS_BUILT_FOR_EVENT) == last_event:
        return False
    for frame in Frame.values:
        leaderboard_rebuild(frame=frame)
    cache.set(LEADERBOARDS_BUILT_FOR_EVENT, last_event, timeout=None)
    return True


@transaction.atomic
def user_scores_delete(*, user) -> None:
    """Remove a deleted account's scores and leaderboard rows (its contribution events stay)."""
    UserScore.objects.filter(user=user).delete()
    LeaderboardEntry.objects.filter(user=user).delete()


def scores_delete_on_account_deleted(sender, *, user, **kwargs) -> None:
    """Receiver of oasst.signals.account_deleted (connected in ranking.apps)."""
    user_scores_delete(user=user)
