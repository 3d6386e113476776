"""Writers of ranking results (consensus ranks, agreement), scores and the leaderboard."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from ranking import consensus, scoring
from ranking.events import events_record
from ranking.models import ContributionEvent, Frame, LeaderboardEntry, Ranking, RankingResult, UserScore
from tasks.models import Message, MessageTree, TreeState
from tasks.services import tree_locked, tree_transition
from tasks.tree_manager import tree_config

logger = logging.getLogger(__name__)
User = get_user_model()


@transaction.atomic
def tree_score(*, tree_id) -> MessageTree:
    """Write each ranked parent's consensus ranks on its replies, each ranking's agreement with it,
    and the points they earn; then move the tree to ready_for_export. Running it again on a
    scored tree changes nothing."""
    tree = tree_locked(tree_id)
    if tree.state != TreeState.READY_FOR_SCORING:
        return tree
    good_tau = tree_config().good_ranking_tau
    by_parent: dict = {}
    for ranking in Ranking.objects.filter(parent__tree=tree).order_by("created_at"):
        by_parent.setdefault(ranking.parent_id, []).append(ranking)
    events = []
    for parent_id, rankings in by_parent.items():
        complete = [r for r in rankings if not r.not_rankable]
        orders = [r.ranking for r in complete]
        order = consensus.ranked_pairs(orders)
        RankingResult.objects.update_or_create(parent_id=parent_id, defaults={
            "consensus": order, "rankings": len(complete), "not_rankable": len(rankings) - len(complete),
            "agreement": consensus.kendalls_w(orders),
        })
        for ranking in complete:
            ranking.agreement = consensus.kendall_tau(ranking.ranking, order)
            if ranking.agreement >= good_tau:
                events.append((ranking.user_id, scoring.GOOD_RANKING, parent_id))
        Ranking.objects.bulk_update(complete, ["agreement"])
        ranks = {message_id: rank for rank, message_id in enumerate(order)}
        replies = list(Message.objects.filter(parent_id=parent_id))
        for reply in replies:
            reply.rank = ranks.get(str(reply.pk))
            if reply.rank is not None and reply.rank < len(scoring.RANK_EVENTS) and len(order) > 1:
                events.append((reply.author_id, scoring.RANK_EVENTS[reply.rank], reply.pk))
        Message.objects.bulk_update(replies, ["rank"])
    events_record(events)
    tree_transition(tree, TreeState.READY_FOR_EXPORT)
    return tree


@transaction.atomic
def tree_scoring_failed(*, tree_id) -> MessageTree:
    tree = tree_locked(tree_id)
    if tree.state == TreeState.READY_FOR_SCORING:
        tree_transition(tree, TreeState.SCORING_FAILED)
    return tree


def tree_score_or_fail(*, tree_id) -> MessageTree:
    try:
        return tree_score(tree_id=tree_id)
    except Exception:
        logger.exception("scoring tree %s failed", tree_id)
        return tree_scoring_failed(tree_id=tree_id)


def trees_scoring_retry(*, unsent_after: timedelta = timedelta(minutes=10)) -> int:
    """Put trees whose scoring failed back to scoring, and score them; also score trees left ready for
    scoring for longer than unsent_after (their job was never sent: the broker was down)."""
    retried = 0
    unsent = list(MessageTree.objects.filter(state=TreeState.READY_FOR_SCORING,
                                             updated_at__lt=timezone.now() - unsent_after).values_list("pk", flat=True))
    for tree_id in MessageTree.objects.filter(state=TreeState.SCORING_FAILED).values_list("pk", flat=True):
        with transaction.atomic():
            tree = tree_locked(tree_id)
            if tree.state != TreeState.SCORING_FAILED:
                continue
            tree_transition(tree, TreeState.READY_FOR_SCORING)
        tree_score_or_fail(tree_id=tree_id)
        retried += 1
    for tree_id in unsent:
        tree_score_or_fail(tree_id=tree_id)  # a no-op when its job scored it meanwhile
        retried += 1
    return retried


# --- Scores --------------------------------------------------------------------------------------


def user_scores_refresh(*, user, now=None) -> dict[str, UserScore]:
    """Recount one user's points in every time frame (one aggregate query, one upsert)."""
    now = now or timezone.now()
    windows = {frame: Count("id", filter=Q(created_at__gte=now - span)) if span else Count("id")
               for frame, span in scoring.FRAMES.items()}
    per_kind = ContributionEvent.objects.filter(user_id=user.pk).values("kind").annotate(**windows).order_by()
    counts: dict[str, dict[str, int]] = {frame: {} for frame in scoring.FRAMES}
    for row in per_kind:
        for frame in scoring.FRAMES:
            if row[frame]:
                counts[frame][row["kind"]] = row[frame]
    scores = []
    for frame in scoring.FRAMES:
        points = scoring.breakdown(counts[frame])
        scores.append(UserScore(user_id=user.pk, frame=frame, counts=counts[frame],
                                breakdown={kind: p for kind, p in points.items() if p},
                                score=sum(points.values()), updated_at=now))
    UserScore.objects.bulk_create(scores, update_conflicts=True, unique_fields=["user", "frame"],
                                  update_fields=["counts", "breakdown", "score", "updated_at"])
    return {score.frame: score for score in scores}


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


def troll_counts(*, frame: str, now=None, limit: int = 100, user_id: int | None = None) -> list[dict]:
    """The users whose messages drew the most red flags, downvotes and bad labels in the frame."""
    from tasks.models import EmojiReaction

    now = now or timezone.now()
    span = scoring.FRAMES[frame]
    messages = Message.objects.filter(author__isnull=False)
    reactions = EmojiReaction.objects.filter(message__author__isnull=False, emoji__in=["+1", "-1", "red_flag"])
    if span:
        messages = messages.filter(created_at__gte=now - span)
        reactions = reactions.filter(message__created_at__gte=now - span)
    if user_id is not None:
        messages = messages.filter(author_id=user_id)
        reactions = reactions.filter(message__author_id=user_id)

    labels = ("lang_mismatch", "not_appropriate", "pii", "hate_speech", "sexual_content", "political_content")
    counts: dict = {}
    for row in messages.values("author_id").annotate(
            spam_prompts=Count("id", filter=Q(parent__isnull=True, review_result=False)),
            **{label: Count("id", filter=Q(**{f"labels__{label}__value__gte": 0.5})) for label in labels},
    ).order_by():
        counts[row.pop("author_id")] = row
    names = {"+1": "upvotes", "-1": "downvotes", "red_flag": "red_flags"}
    for author_id, emoji, n in (reactions.values_list("message__author_id", "emoji").annotate(n=Count("id"))
                                .order_by()):
        counts.setdefault(author_id, {})[names[emoji]] = n
    entries = []
    for author_id, row in counts.items():
        row = {name: row.get(name, 0) for name in scoring.TROLL_WEIGHTS}
        points = scoring.troll_score(row)
        if points > 0:
            entries.append({"user_id": author_id, "troll_score": points, **row})
    entries.sort(key=lambda entry: (-entry["troll_score"], entry["user_id"]))
    return entries[:limit]
