"""Writers of ranking results: consensus ranks on replies, and tree scoring."""

from __future__ import annotations

import logging

from django.db import transaction

from ranking import consensus
from ranking.models import Ranking
from tasks.models import Message, MessageTree, TreeState
from tasks.services import tree_locked, tree_transition

logger = logging.getLogger(__name__)


@transaction.atomic
def tree_score(*, tree_id) -> MessageTree:
    """Write each ranked parent's consensus ranks on its replies and move the tree to
    ready_for_export. Running it again on a scored tree changes nothing."""
    tree = tree_locked(tree_id)
    if tree.state != TreeState.READY_FOR_SCORING:
        return tree
    rankings: dict = {}
    for parent_id, order in (Ranking.objects.filter(parent__tree=tree, not_rankable=False)
                             .order_by("created_at").values_list("parent_id", "ranking")):
        rankings.setdefault(parent_id, []).append(order)
    for parent_id, orders in rankings.items():
        ranks = {message_id: rank for rank, message_id in enumerate(consensus.ranked_pairs(orders))}
        replies = list(Message.objects.filter(parent_id=parent_id))
        for reply in replies:
            reply.rank = ranks.get(str(reply.pk))
        Message.objects.bulk_update(replies, ["rank"])
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


def trees_scoring_retry() -> int:
    """Put trees whose scoring failed back to scoring, and score them."""
    retried = 0
    for tree_id in MessageTree.objects.filter(state=TreeState.SCORING_FAILED).values_list("pk", flat=True):
        with transaction.atomic():
            tree = tree_locked(tree_id)
            if tree.state != TreeState.SCORING_FAILED:
                continue
            tree_transition(tree, TreeState.READY_FOR_SCORING)
        tree_score_or_fail(tree_id=tree_id)
        retried += 1
    return retried
