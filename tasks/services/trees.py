"""How a tree moves on: review decisions, the end of growth and of ranking (which sends the tree to
scoring), counters recomputed after moderation, halting and resuming, and the prompt lottery that
starts waiting trees growing. Locking and the allowed state changes: tasks.tree_state."""

from __future__ import annotations

import random
from collections import Counter

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils.translation import gettext

from oasst.enqueue import enqueue_on_commit
from oasst.errors import Conflict
from ranking import scoring
from ranking.events import event_record
from tasks import selectors, tree_manager
from tasks.models import Message, MessageTree, Role, TreeState
from tasks.scoring import tree_score_job
from tasks.services.common import PENDING_FIELD, count_decrement
from tasks.signals import reply_accepted
from tasks.tree_manager import TreeConfig, tree_config
from tasks.tree_state import tree_locked, tree_transition


def review_decision_apply(tree: MessageTree, message: Message, accepted: bool, config: TreeConfig) -> None:
    tree.awaiting_review = max(tree.awaiting_review - 1, 0)
    if accepted:
        tree.accepted_count += 1
        kind = (scoring.ACCEPTED_PROMPT if message.parent_id is None else
                scoring.ACCEPTED_ASSISTANT_REPLY if message.role == Role.ASSISTANT else scoring.ACCEPTED_PROMPTER_REPLY)
        event_record(user_id=message.author_id, kind=kind, message_id=message.pk)
        if kind == scoring.ACCEPTED_ASSISTANT_REPLY:
            reply_accepted.send(sender=Message, message_id=message.pk)
    else:
        tree.message_count = max(tree.message_count - 1, 0)
        if message.parent_id:
            Message.objects.filter(pk=message.parent_id).update(children_count=count_decrement("children_count"))
    tree.save(update_fields=["awaiting_review", "accepted_count", "message_count", "updated_at"])
    if message.parent_id is None:
        tree_transition(tree, tree_manager.state_after_prompt_review(accepted))
        if accepted:
            transaction.on_commit(lambda: lottery_activate(lang=tree.lang))
    else:
        tree_check_growth(tree, config)


def tree_check_growth(tree: MessageTree, config: TreeConfig) -> None:
    if tree.state != TreeState.GROWING:
        return
    finished = tree_manager.growth_finished(
        accepted_count=tree.accepted_count, awaiting_review=tree.awaiting_review,
        replies_pending=tree.replies_pending, goal=tree.goal_tree_size,
        extendible_parents=0 if tree.accepted_count >= tree.goal_tree_size
        else int(selectors.extendible_parent_exists(tree, config)),
    )
    if finished:
        tree_transition(tree, TreeState.RANKING)
        tree_check_rankings(tree, config)


def rankable_parents(tree: MessageTree, config: TreeConfig):
    roles = [Role.PROMPTER] + ([Role.ASSISTANT] if config.rank_prompter_replies else [])
    return Message.objects.filter(tree=tree, deleted=False, review_result=True, role__in=roles,
                                  children_count__gte=2)


def tree_check_rankings(tree: MessageTree, config: TreeConfig) -> None:
    """Move a ranking tree on once every rankable parent has its rankings."""
    if tree.state != TreeState.RANKING:
        return
    if not rankable_parents(tree, config).filter(ranking_count__lt=config.num_required_rankings).exists():
        tree_transition(tree, TreeState.READY_FOR_SCORING)
        enqueue_on_commit(tree_score_job, str(tree.pk))


def tree_after_structure_change(tree: MessageTree) -> None:
    """After messages were deleted, undeleted or rejected by moderation, a growing tree may have
    reached its end and a ranking tree may have no parent left to rank: move them on."""
    config = tree_config()
    if tree.state == TreeState.GROWING:
        tree_check_growth(tree, config)
    elif tree.state == TreeState.RANKING:
        tree_check_rankings(tree, config)


def subtree_set_deleted(tree: MessageTree, message: Message, *, deleted: bool) -> int:
    messages = selectors.tree_messages(tree.pk)
    children: dict = {}
    for m in messages:
        children.setdefault(m.parent_id, []).append(m.pk)
    ids, stack = [], [message.pk]
    while stack:
        current = stack.pop()
        ids.append(current)
        stack.extend(children.get(current, []))
    changed = Message.objects.filter(pk__in=ids).exclude(deleted=deleted).update(deleted=deleted)
    tree_counters_recompute(tree)
    tree_after_structure_change(tree)
    return changed


def tree_counters_recompute(tree: MessageTree) -> None:
    """Recount a tree's counters from its messages and open tasks (after moderation or repair).
    The caller holds the tree lock; message rows are locked before the tasks are counted so that
    no concurrent claim is lost."""
    messages = list(Message.objects.select_for_update(no_key=True).filter(tree=tree))
    pending: dict = {}
    for item_id, task_type in selectors.open_tasks(tree=tree).values_list("item_id", "type"):
        field = PENDING_FIELD.get(task_type)
        if field:
            pending.setdefault(item_id, Counter())[field] += 1
    live = [m for m in messages if not m.deleted and m.review_result is not False]
    children = Counter(m.parent_id for m in live if m.parent_id)
    changed = []
    for m in messages:
        values = {"children_count": children.get(m.pk, 0)}
        values.update({field: pending.get(m.pk, Counter())[field] for field in set(PENDING_FIELD.values())})
        if any(getattr(m, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(m, key, value)
            changed.append(m)
    Message.objects.bulk_update(changed, ["children_count", "reviews_pending", "rankings_pending", "replies_pending"])
    tree.message_count = len(live)
    tree.accepted_count = sum(1 for m in live if m.review_result is True)
    tree.awaiting_review = sum(1 for m in live if m.review_result is None)
    tree.replies_pending = sum(m.replies_pending for m in messages)
    tree.save(update_fields=["message_count", "accepted_count", "awaiting_review", "replies_pending", "updated_at"])


@transaction.atomic
def tree_halt(*, tree_id) -> MessageTree:
    tree = tree_locked(tree_id)
    tree_transition(tree, TreeState.HALTED_BY_MODERATOR)
    return tree


@transaction.atomic
def tree_resume(*, tree_id) -> MessageTree:
    tree = tree_locked(tree_id)
    if tree.state != TreeState.HALTED_BY_MODERATOR or not tree.halted_from_state:
        raise Conflict(gettext("This tree is not halted."), code="not_halted")
    tree_transition(tree, tree.halted_from_state)
    tree.halted_from_state = ""
    tree.save(update_fields=["halted_from_state"])
    if tree.state == TreeState.GROWING:
        tree.reply_skip_count = 0
        tree.save(update_fields=["reply_skip_count"])
        tree_check_growth(tree, tree_config())
    return tree


def lottery_activate(*, lang: str, rng: random.Random | None = None) -> list[MessageTree]:
    """Move waiting prompts of a language to growing while fewer than max_active_trees grow."""
    config = tree_config()
    rng = rng or random.Random()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # one activation per language at a time
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"oasst-lottery-{lang}"])
        room = config.max_active_trees - MessageTree.objects.filter(state=TreeState.GROWING, lang=lang).count()
        if room <= 0:
            return []
        waiting = list(MessageTree.objects.filter(state=TreeState.PROMPT_LOTTERY_WAITING, lang=lang)
                       .order_by("created_at")[:200])
        if not waiting:
            return []
        authors = dict(Message.objects.filter(id__in=[t.pk for t in waiting]).values_list("id", "author_id"))
        scores = _author_acceptance(set(authors.values()) - {None})
        pool = [(tree.pk, scores.get(authors.get(tree.pk), 0.0)) for tree in waiting]
        by_id = {tree.pk: tree for tree in waiting}
        activated = []
        while pool and len(activated) < room:
            picked = tree_manager.lottery_pick(pool, rng)
            pool = [entry for entry in pool if entry[0] != picked]
            tree = by_id[picked]
            tree_transition(tree, TreeState.GROWING)
            activated.append(tree)
        return activated


def _author_acceptance(author_ids: set) -> dict:
    """Share of each author's decided replies that were accepted."""
    rows = (Message.objects.filter(author_id__in=author_ids, parent__isnull=False, review_result__isnull=False)
            .values("author_id").annotate(total=Count("id"), accepted=Count("id", filter=Q(review_result=True))))
    return {row["author_id"]: row["accepted"] / row["total"] for row in rows}
