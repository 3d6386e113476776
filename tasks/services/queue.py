"""Handing out tasks: request (choose and claim the task that moves the data forward most), ack,
nack (skip), and expiry, which gives back the slots of tasks never finished.

Work is reserved with conditional UPDATEs on counters (`*_pending`), so an item is never out with
more users than it still needs, also under concurrent requests, on PostgreSQL and SQLite alike. A
claim first takes its user's claim lock (an advisory lock on PostgreSQL; on SQLite the write lock
its IMMEDIATE transaction holds), so a user's own concurrent requests neither pass the pending cap
nor take one item twice; other users' claims don't wait on it."""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from oasst.celery import job
from oasst.enqueue import enqueue_on_commit
from oasst.errors import NotFound, RateLimited, ServiceError
from oasst.models import User
from oasst.text import check_text
from tasks import selectors, tree_manager
from tasks.models import Message, MessageTree, Task, TaskType, TreeState
from tasks.services.common import (
    LABEL_TASKS,
    MAX_REASON,
    RANK_TASKS,
    check_can_work,
    check_language,
    check_task_open,
    count_decrement,
    task_locked,
)
from tasks.services.trees import lottery_activate
from tasks.tree_manager import Candidate, Pool, TreeConfig, tree_config
from tasks.tree_state import tree_locked, tree_transition

logger = logging.getLogger(__name__)


class _LostRace(Exception):
    """Another request reserved the last free slot of this item first, or (one of the user's own
    requests) the item itself."""


def task_request(*, user: User, task_type: str = "random", lang: str, rng: random.Random | None = None) -> Task:
    """Hand the user the task that moves the data forward most (or one of the asked type).

    Not one transaction: each claim attempt is its own short transaction, so an attempt that
    loses a race releases its locks before the next candidate is tried. The candidates are read
    outside it; the claim reads the user's cap and the item again under the user's claim lock.
    """
    check_can_work(user)
    check_language(lang)
    config = tree_config()
    if task_type != "random" and task_type not in tree_manager.enabled_task_types(config):
        raise ServiceError(gettext("Unknown or disabled task type %(type)s.") % {"type": repr(task_type)},
                           code="invalid_task_type")
    rng = rng or random.Random()
    now = timezone.now()
    pools = selectors.pools_for(task_type, config)
    candidates, markers = selectors.task_candidates(user=user, lang=lang, config=config, pools=pools, now=now)
    if selectors.PENDING_CAP in markers:
        raise _pending_cap_reached(config)
    if selectors.LOTTERY_WAITING in markers and selectors.GROWING_FULL not in markers:
        if lottery_activate(lang=lang, rng=rng) and Pool.REPLY in pools:
            candidates, _ = selectors.task_candidates(user=user, lang=lang, config=config, pools=pools, now=now)
    weights = config.pool_weights() if task_type == "random" else dict.fromkeys(pools, 1.0)
    for candidate in tree_manager.plan(candidates, weights, config, rng):
        try:
            with transaction.atomic():
                _claim_check(user=user, candidate=candidate, config=config, now=now)
                _reserve(candidate, config)
                return _task_create(user=user, candidate=candidate, lang=lang, config=config, now=now, rng=rng)
        except _LostRace:
            continue
    raise NotFound(gettext("No task of this kind is available right now."), code="no_task")


def _pending_cap_reached(config: TreeConfig) -> RateLimited:
    return RateLimited(ngettext("You hold %(n)s open task: finish or skip it first.",
                                "You hold %(n)s open tasks: finish or skip one first.",
                                config.max_pending_tasks_per_user) % {"n": config.max_pending_tasks_per_user},
                       code="too_many_pending_tasks")


def _user_claims_locked(user: User) -> None:
    """Serialise one user's claims, and only theirs: concurrent requests of one user must not all
    pass the cap, or take one item twice, on what each read before the others committed."""
    if connection.vendor == "postgresql":
        # Not the user row: a submit updates it (the streak) while holding the tree and message locks a claim takes.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"oasst-task-claim-{user.pk}"])
    elif connection.transaction_mode not in ("IMMEDIATE", "EXCLUSIVE"):  # SQLite: BEGIN took the write lock
        raise ImproperlyConfigured("SQLite needs OPTIONS transaction_mode IMMEDIATE to serialise task claims.")


def _claim_check(*, user: User, candidate: Candidate, config: TreeConfig, now) -> None:
    """The cap and the one-task-per-item rule, read again under the user's claim lock: the
    candidates were read before it, and the user's other requests may have claimed since."""
    _user_claims_locked(user)
    held, touched = selectors.claim_blockers(user=user, candidate=candidate, config=config, now=now)
    if held >= config.max_pending_tasks_per_user:
        raise _pending_cap_reached(config)
    if touched:
        raise _LostRace


def _reserve(candidate: Candidate, config: TreeConfig) -> None:
    """Take one of the item's free slots with a conditional UPDATE, or raise _LostRace."""
    pool = candidate.pool
    if pool == Pool.PROMPT:
        return
    messages = Message.objects.filter(pk=candidate.message_id, deleted=False)
    if pool in (Pool.REVIEW_PROMPT, Pool.REVIEW_REPLY):
        required = config.reviews_required(is_root=pool == Pool.REVIEW_PROMPT)
        won = messages.filter(review_result__isnull=True, review_count__lt=required - F("reviews_pending")) \
            .update(reviews_pending=F("reviews_pending") + 1)
    elif pool == Pool.RANKING:
        won = messages.filter(ranking_count__lt=config.num_required_rankings - F("rankings_pending")) \
            .update(rankings_pending=F("rankings_pending") + 1)
    else:  # a reply: a slot in the tree's goal size, then a slot under the parent
        won = MessageTree.objects.filter(
            pk=candidate.tree_id, state=TreeState.GROWING,
            message_count__lt=F("goal_tree_size") - F("replies_pending"),
        ).update(replies_pending=F("replies_pending") + 1)
        if won:
            won = messages.filter(review_result=True, children_count__lt=candidate.reply_limit - F("replies_pending")) \
                .update(replies_pending=F("replies_pending") + 1)
    if not won:
        raise _LostRace


def _message_brief(message: Message) -> dict:
    return {"id": str(message.pk), "role": message.role, "text": message.text, "lang": message.lang}


def _task_create(*, user: User, candidate: Candidate, lang: str, config: TreeConfig, now,
                 rng: random.Random) -> Task:
    task_type = tree_manager.task_type_for(candidate)
    payload: dict = {}
    if candidate.pool != Pool.PROMPT:
        messages = {m.pk: m for m in selectors.tree_messages(candidate.tree_id)}
        item = messages[candidate.message_id]
        payload["conversation"] = [_message_brief(m) for m in selectors.conversation_to(messages, item.pk)]
        payload["message_id"] = str(item.pk)
        if candidate.pool == Pool.RANKING:
            replies = [m for m in messages.values()
                       if m.parent_id == item.pk and not m.deleted and m.review_result is True]
            rng.shuffle(replies)
            payload["reply_messages"] = [{"id": str(m.pk), "role": m.role, "text": m.text} for m in replies]
        elif candidate.pool in (Pool.REVIEW_PROMPT, Pool.REVIEW_REPLY):
            is_root = item.parent_id is None
            mode = tree_manager.review_mode(role=item.role, is_root=is_root, config=config, rng=rng)
            valid, mandatory = tree_manager.label_set(mode=mode, role=item.role, is_root=is_root)
            payload.update(mode=mode, valid_labels=valid, mandatory_labels=mandatory)
    return Task.objects.create(
        type=task_type, user=user, lang=lang, payload=payload, item_id=candidate.message_id,
        tree_id=candidate.tree_id, expires_at=now + timedelta(seconds=config.task_valid_for_seconds),
    )


def task_ack(*, user: User, task_id) -> Task:
    """Acknowledge an open task of the user's: one UPDATE ... RETURNING on the usual path; when it
    changes nothing, the task is read under its lock to say why (or, if it was open after all, acked)."""
    now = timezone.now()
    task = _task_acked(user=user, task_id=task_id, now=now)
    if task is not None:
        return task
    with transaction.atomic():
        task = task_locked(task_id)
        check_task_open(task, user, timezone.now())
        if task.acked_at is None:
            task.acked_at = timezone.now()
            task.save(update_fields=["acked_at"])
    return task


def _task_acked(*, user: User, task_id, now) -> Task | None:
    """The task, acked (acked_at kept if set), when it is the user's and open; else None."""
    try:
        task_id = Task._meta.pk.get_db_prep_value(uuid.UUID(str(task_id)), connection)
    except ValueError:
        return None
    now = connection.ops.adapt_datetimefield_value(now)
    table = connection.ops.quote_name(Task._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in Task._meta.concrete_fields)
    statement = (f"UPDATE {table} SET acked_at = COALESCE(acked_at, %s) WHERE id = %s AND user_id = %s"  # noqa: S608
                 f" AND NOT done AND NOT skipped AND NOT expired AND expires_at > %s RETURNING {columns}")
    tasks = Task.objects.raw(statement, [now, task_id, user.pk, now])  # the model's own names, values as parameters
    return next(iter(tasks), None)


@transaction.atomic
def task_nack(*, user: User, task_id, reason: str = "") -> Task:
    """Skip a task: its slot is released and the item is not offered to this user again."""
    if not isinstance(reason, str):
        raise ServiceError(gettext("The reason must be a string."), code="invalid_reason")
    reason = reason.strip()
    check_text(reason, what="reason", code="invalid_reason")
    if len(reason) > MAX_REASON:
        raise ServiceError(gettext("The reason is longer than %(max)s characters.") % {"max": MAX_REASON},
                           code="reason_too_long")
    task = task_locked(task_id)
    check_task_open(task, user, timezone.now())
    task.skipped = True
    task.skip_reason = reason
    task.save(update_fields=["skipped", "skip_reason"])
    task_release(task, skipped=True)
    return task


def task_release(task: Task, *, skipped: bool) -> None:
    """Give back the slot a task held."""
    if task.type in LABEL_TASKS:
        Message.objects.filter(pk=task.item_id).update(reviews_pending=count_decrement("reviews_pending"))
    elif task.type in RANK_TASKS:
        Message.objects.filter(pk=task.item_id).update(rankings_pending=count_decrement("rankings_pending"))
    elif task.type in (TaskType.ASSISTANT_REPLY, TaskType.PROMPTER_REPLY):
        tree = tree_locked(task.tree_id)
        tree.replies_pending = max(tree.replies_pending - 1, 0)
        tree.reply_skip_count += int(skipped)
        tree.save(update_fields=["replies_pending", "reply_skip_count", "updated_at"])
        Message.objects.filter(pk=task.item_id).update(replies_pending=count_decrement("replies_pending"))
        config = tree_config()
        if (skipped and config.auto_mod_enabled and tree.reply_skip_count >= config.auto_mod_max_skip_reply
                and tree.state == TreeState.GROWING):
            logger.info("tree %s halted: %s reply tasks skipped", tree.pk, tree.reply_skip_count)
            tree_transition(tree, TreeState.HALTED_BY_MODERATOR)


def tasks_expire(*, now=None, batch: int = 500) -> int:
    """Release the slots of open tasks past their expiry; returns how many tasks expired."""
    now = now or timezone.now()
    expired = 0
    while True:
        with transaction.atomic():
            rows = list(selectors.open_tasks(expires_at__lte=now).select_for_update(skip_locked=True, no_key=True)
                        .order_by("expires_at")[:batch])
            for task in rows:
                task.expired = True
            Task.objects.bulk_update(rows, ["expired"])
            for task in rows:
                task_release(task, skipped=False)
        expired += len(rows)
        if len(rows) < batch:
            return expired


@job("tasks.tasks_expire", former_name="tasks.expire_tasks")
def tasks_expire_job() -> int:
    """Kept beside tasks_expire, not in tasks/jobs.py: user_open_tasks_release enqueues it, and
    tasks/jobs.py imports this module (tasks.jobs lists it for Celery's autodiscovery)."""
    return tasks_expire()


def user_open_tasks_release(*, user: User) -> int:
    """Release the work a user's open tasks reserved (after a ban or a deleted account): they expire
    now, and the expiry job gives their slots back once the transaction commits. Returns how many."""
    released = selectors.open_tasks(user=user).update(expires_at=timezone.now())
    if released:
        enqueue_on_commit(tasks_expire_job)
    return released
