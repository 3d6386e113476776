"""Scoring a tree once its rankings are in: ranking's consensus per ranked parent (ranking.services,
which stores the results and the rankings' agreement), each reply's rank written on the message, the
points earned recorded (ranking.events), then the tree moves to ready_for_export. Also the retry of
trees whose scoring failed or whose job was never sent.

The two scoring jobs live here, beside their services, rather than in tasks/jobs.py: the tree
services (tasks.services.trees, .moderation) enqueue tree_score_job, and tasks/jobs.py imports
those services; tasks/jobs.py lists them for Celery's autodiscovery. Their names are the ones beat
and queued messages already use ("ranking.tree_score", "ranking.scoring_retry")."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from ranking import scoring
from ranking.events import events_record
from ranking.services import tree_consensus_record
from tasks.models import Message, MessageTree, TreeState
from tasks.tree_manager import tree_config
from tasks.tree_state import tree_locked, tree_transition

logger = logging.getLogger(__name__)


@transaction.atomic
def tree_score(*, tree_id) -> MessageTree:
    """Write each ranked parent's consensus ranks on its replies, each ranking's agreement with it,
    and the points they earn; then move the tree to ready_for_export. Running it again on a
    scored tree changes nothing."""
    tree = tree_locked(tree_id)
    if tree.state != TreeState.READY_FOR_SCORING:
        return tree
    events = []
    for parent_id, (order, ranking_events) in tree_consensus_record(
            tree_id=tree.pk, good_tau=tree_config().good_ranking_tau).items():
        events.extend(ranking_events)
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


@shared_task(name="ranking.tree_score")
def tree_score_job(tree_id: str) -> str:
    return tree_score_or_fail(tree_id=tree_id).state


@shared_task(name="ranking.scoring_retry")
def scoring_retry_job() -> int:
    return trees_scoring_retry()
