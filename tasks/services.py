"""The only writers of trees, messages, tasks, reviews, reactions and the flagged queue.

Locking, in one order everywhere so that no two transactions wait on each other in a cycle:
the task row, then the tree row (`tree_locked`), then message rows. Rows are locked FOR NO KEY
UPDATE, which does not block the KEY SHARE locks that the foreign-key checks of concurrent
inserts take. Work is reserved with conditional UPDATEs on counters (`*_pending`), so an item is
never out with more users than it still needs, also under concurrent requests, on PostgreSQL
and SQLite alike. A claim first takes its user's claim lock (an advisory lock on PostgreSQL; on
SQLite the write lock its IMMEDIATE transaction holds), so a user's own concurrent requests
neither pass the pending cap nor take one item twice; other users' claims don't wait on it.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from oasst.audit import check_permission, clean_reason, moderation_record
from oasst.celery import enqueue_on_commit
from oasst.errors import Conflict, Forbidden, NotFound, RateLimited, ServiceError
from oasst.languages import LANGUAGES
from oasst.models import User
from oasst.text import check_text
from ranking import scoring
from ranking.events import event_record, streak_record
from tasks import selectors, tree_manager
from tasks.models import (
    Emoji,
    EmojiReaction,
    FlaggedMessage,
    Message,
    MessageReport,
    MessageTree,
    Review,
    Role,
    Task,
    TaskType,
    TreeState,
)
from tasks.tree_manager import Candidate, Pool, TreeConfig, tree_config

logger = logging.getLogger(__name__)

TEXT_TASKS = {TaskType.INITIAL_PROMPT, TaskType.PROMPTER_REPLY, TaskType.ASSISTANT_REPLY}
RANK_TASKS = {TaskType.RANK_ASSISTANT_REPLIES, TaskType.RANK_PROMPTER_REPLIES, TaskType.RANK_INITIAL_PROMPTS}
LABEL_TASKS = {TaskType.LABEL_INITIAL_PROMPT, TaskType.LABEL_PROMPTER_REPLY, TaskType.LABEL_ASSISTANT_REPLY}
_PENDING_FIELD = {
    **dict.fromkeys(LABEL_TASKS, "reviews_pending"),
    **dict.fromkeys(RANK_TASKS, "rankings_pending"),
    TaskType.ASSISTANT_REPLY: "replies_pending",
    TaskType.PROMPTER_REPLY: "replies_pending",
}
MAX_CLIENT_ID = 64
MAX_REASON = 512
MAX_MODERATION_REASON = 500  # as the moderation API's and the admin's forms
MAX_RANKING_LENGTH = 100  # far more replies than any parent has: a bound on the request, not a rule


def _decrement(field: str):
    return Greatest(F(field) - 1, 0)


# --- Checks ------------------------------------------------------------------------------------


def check_can_work(user: User) -> None:
    if user.is_banned:
        raise Forbidden("Your account is banned from contributing.", code="banned")
    if user.tos_accepted_at is None:
        raise Forbidden("Accept the terms of service before you contribute.", code="tos_not_accepted")


def check_language(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ServiceError(f"Unknown language {lang!r}.", code="invalid_language")


def clean_text(text: object, *, config: TreeConfig, field: str = "text", allow_empty: bool = False) -> str:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ServiceError(f"The {field} must be a string.", code=f"invalid_{field}")
    text = text.strip()
    check_text(text, what=field, code=f"invalid_{field}")
    if not text and not allow_empty:
        raise ServiceError(f"The {field} is empty.", code=f"empty_{field}")
    if len(text) > config.max_text_length:
        raise ServiceError(f"The {field} is longer than {config.max_text_length} characters.",
                           code=f"{field}_too_long")
    return text


def _task_locked(task_id) -> Task:
    """Lock a task row (its item comes along in the same statement)."""
    try:
        return Task.objects.select_related("item").select_for_update(of=("self",), no_key=True).get(pk=task_id)
    except (Task.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such task.", code="task_not_found") from None


def _check_task_open(task: Task, user: User, now) -> None:
    if task.user_id != user.pk:
        raise NotFound("No such task.", code="task_not_found")  # another user's task is not disclosed
    if task.done:
        raise Conflict("This task is already done.", code="task_done")
    if task.skipped:
        raise Conflict("This task was skipped.", code="task_skipped")
    if task.expired or task.expires_at <= now:
        raise Conflict("This task has expired.", code="task_expired")


def tree_locked(tree_id) -> MessageTree:
    """Lock a tree row: every write to a tree and its messages happens under this lock."""
    return MessageTree.objects.select_for_update(no_key=True).get(pk=tree_id)


def _task_finish(task: Task, user: User, now, *, event: str, message_id) -> None:
    """Close the task, record what the user earned, and keep their streak."""
    Task.objects.filter(pk=task.pk).update(done=True, done_at=now, acked_at=task.acked_at or now)
    event_record(user_id=user.pk, kind=event, message_id=message_id, at=now)
    streak_record(user=user, now=now)


# --- Handing out tasks -------------------------------------------------------------------------


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
        raise ServiceError(f"Unknown or disabled task type {task_type!r}.", code="invalid_task_type")
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
    raise NotFound("No task of this kind is available right now.", code="no_task")


def _pending_cap_reached(config: TreeConfig) -> RateLimited:
    return RateLimited(f"You hold {config.max_pending_tasks_per_user} open tasks: finish or skip one first.",
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
    with transaction.atomic():
        task = _task_locked(task_id)
        _check_task_open(task, user, timezone.now())
        if task.acked_at is None:
            task.acked_at = timezone.now()
            task.save(update_fields=["acked_at"])
    return task


@transaction.atomic
def task_nack(*, user: User, task_id, reason: str = "") -> Task:
    """Skip a task: its slot is released and the item is not offered to this user again."""
    if not isinstance(reason, str):
        raise ServiceError("The reason must be a string.", code="invalid_reason")
    reason = reason.strip()
    check_text(reason, what="reason", code="invalid_reason")
    if len(reason) > MAX_REASON:
        raise ServiceError(f"The reason is longer than {MAX_REASON} characters.", code="reason_too_long")
    task = _task_locked(task_id)
    _check_task_open(task, user, timezone.now())
    task.skipped = True
    task.skip_reason = reason
    task.save(update_fields=["skipped", "skip_reason"])
    _release(task, skipped=True)
    return task


def _release(task: Task, *, skipped: bool) -> None:
    """Give back the slot a task held."""
    if task.type in LABEL_TASKS:
        Message.objects.filter(pk=task.item_id).update(reviews_pending=_decrement("reviews_pending"))
    elif task.type in RANK_TASKS:
        Message.objects.filter(pk=task.item_id).update(rankings_pending=_decrement("rankings_pending"))
    elif task.type in (TaskType.ASSISTANT_REPLY, TaskType.PROMPTER_REPLY):
        tree = tree_locked(task.tree_id)
        tree.replies_pending = max(tree.replies_pending - 1, 0)
        tree.reply_skip_count += int(skipped)
        tree.save(update_fields=["replies_pending", "reply_skip_count", "updated_at"])
        Message.objects.filter(pk=task.item_id).update(replies_pending=_decrement("replies_pending"))
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
                _release(task, skipped=False)
        expired += len(rows)
        if len(rows) < batch:
            return expired


# --- Submissions -------------------------------------------------------------------------------


@transaction.atomic
def task_submit(*, user: User, task_id, text: object = None, client_id: object = "", ranking: object = None,
                not_rankable: bool = False, labels: object = None, report: bool = False):
    """Submit a task of any type: a text, a ranking or labels, by the task's type."""
    task = _task_locked(task_id)
    if task.type in RANK_TASKS:
        return _ranking_submit(user=user, task=task, ranking=ranking, not_rankable=not_rankable)
    if task.type in LABEL_TASKS:
        return _labels_submit(user=user, task=task, labels=labels, text=text or "", report=report)
    return _text_submit(user=user, task=task, text=text, client_id=client_id)


@transaction.atomic
def text_submit(*, user: User, task_id, text: object, client_id: object = "") -> Message:
    """A prompt or a reply. A retry with the same client_id returns the message already created."""
    return _text_submit(user=user, task=_task_locked(task_id), text=text, client_id=client_id)


@transaction.atomic
def labels_submit(*, user: User, task_id, labels: object, text: object = "", report: bool = False) -> Review:
    """A review: labels for one message; the last required review decides acceptance."""
    return _labels_submit(user=user, task=_task_locked(task_id), labels=labels, text=text, report=report)


@transaction.atomic
def ranking_submit(*, user: User, task_id, ranking: object = None, not_rankable: bool = False):
    """A ranking of the offered replies, best first, or "not rankable" (all of them are bad)."""
    return _ranking_submit(user=user, task=_task_locked(task_id), ranking=ranking, not_rankable=not_rankable)


def _text_submit(*, user: User, task: Task, text: object, client_id: object) -> Message:
    check_can_work(user)
    config = tree_config()
    now = timezone.now()
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID:
        raise ServiceError(f"client_id must be a string of at most {MAX_CLIENT_ID} characters.",
                           code="invalid_client_id")
    check_text(client_id, what="client_id", code="invalid_client_id")
    if task.done and client_id and task.user_id == user.pk:
        retried = Message.objects.filter(task=task, client_id=client_id).first()
        if retried is not None:
            return retried
    _check_task_open(task, user, now)
    if task.type not in TEXT_TASKS:
        raise ServiceError("This task takes labels or a ranking, not a text.", code="wrong_submission")
    text = clean_text(text, config=config)
    window_start = now - timedelta(minutes=config.duplicate_text_window_minutes)
    # One statement finds every clash: the same text lately, the client_id reused, a reply to this parent.
    same = Q(text=text, created_at__gte=window_start)
    if client_id:
        same |= Q(client_id=client_id)
    if task.item_id:
        same |= Q(parent_id=task.item_id)
    for clash_client_id, clash_parent_id, clash_text in Message.objects.filter(same, author=user).values_list(
            "client_id", "parent_id", "text")[:3]:
        if client_id and clash_client_id == client_id:
            raise Conflict("This client_id was already used for another message.", code="duplicate_client_id")
        if task.item_id and clash_parent_id == task.item_id:
            raise Conflict("You already replied to this message.", code="already_replied")
        if clash_text == text:
            raise Conflict("You sent the same text recently.", code="duplicate_text")

    if task.type == TaskType.INITIAL_PROMPT:
        tree_id = uuid.uuid4()  # the tree takes its prompt's id, as in the oasst export format
        tree = MessageTree.objects.create(
            id=tree_id, lang=task.lang, goal_tree_size=config.goal_tree_size, max_depth=config.max_tree_depth,
            max_children_count=config.max_children_count, message_count=1, awaiting_review=1,
        )
        message = Message.objects.create(id=tree_id, tree=tree, author=user, task=task, client_id=client_id,
                                         role=Role.PROMPTER, text=text, lang=task.lang, depth=0)
    else:
        tree = tree_locked(task.tree_id)
        parent = task.item  # read with the task; its writes happen under the tree lock now held
        if tree.state != TreeState.GROWING or parent.deleted or parent.review_result is not True:
            raise Conflict("This conversation no longer takes replies: skip the task.", code="parent_closed")
        message = Message.objects.create(
            tree=tree, parent=parent, author=user, task=task, client_id=client_id,
            role=Role.ASSISTANT if parent.role == Role.PROMPTER else Role.PROMPTER,
            text=text, lang=task.lang, depth=parent.depth + 1,
        )
        still_open = Message.objects.filter(pk=parent.pk, deleted=False, review_result=True).update(
            children_count=F("children_count") + 1, replies_pending=_decrement("replies_pending"))
        if not still_open:  # deleted by a moderator since the task was read
            raise Conflict("This conversation no longer takes replies: skip the task.", code="parent_closed")
        tree.message_count += 1
        tree.awaiting_review += 1
        tree.replies_pending = max(tree.replies_pending - 1, 0)
        tree.save(update_fields=["message_count", "awaiting_review", "replies_pending", "updated_at"])
    event = {Role.ASSISTANT: scoring.ASSISTANT_REPLY, Role.PROMPTER: scoring.PROMPTER_REPLY}[message.role]
    _task_finish(task, user, now, event=scoring.PROMPT if message.parent_id is None else event,
                 message_id=message.pk)
    return message


def _check_labels(labels: object, payload: Mapping) -> dict[str, float]:
    if not isinstance(labels, dict) or not labels:
        raise ServiceError("labels must be an object of label name -> value.", code="invalid_labels")
    valid = payload.get("valid_labels", [])
    unknown = sorted(set(labels) - set(valid))
    if unknown:
        raise ServiceError(f"Labels not valid for this task: {', '.join(unknown)}.", code="invalid_labels")
    missing = [name for name in payload.get("mandatory_labels", []) if name not in labels]
    if missing:
        raise ServiceError(f"Mandatory labels missing: {', '.join(missing)}.", code="missing_labels")
    for name, value in labels.items():
        error = tree_manager.label_value_error(name, value)
        if error:
            raise ServiceError(error, code="invalid_label_value")
    return {name: float(value) for name, value in labels.items()}


def _labels_submit(*, user: User, task: Task, labels: object, text: object, report: bool) -> Review:
    check_can_work(user)
    config = tree_config()
    now = timezone.now()
    _check_task_open(task, user, now)
    if task.type not in LABEL_TASKS:
        raise ServiceError("This task takes a text or a ranking, not labels.", code="wrong_submission")
    values = _check_labels(labels, task.payload)
    comment = clean_text(text, config=config, field="comment", allow_empty=True)
    if not isinstance(report, bool):
        raise ServiceError("report must be true or false.", code="invalid_report")

    message = task.item
    if message.author_id == user.pk:
        raise Forbidden("You cannot review your own message.", code="own_message")
    tree = tree_locked(task.tree_id)
    message.refresh_from_db(fields=["labels", "review_count", "review_result", "deleted"])
    review_state = TreeState.INITIAL_PROMPT_REVIEW if message.parent_id is None else TreeState.GROWING
    if message.deleted or tree.state != review_state:  # deleted, halted or moved on since the task was handed out
        raise Conflict("This message is no longer under review: skip the task.", code="review_closed")
    try:  # the unique constraint refuses a second review; the whole transaction is then rolled back
        review = Review.objects.create(message=message, user=user, task=task, mode=task.payload.get("mode", "simple"),
                                       labels=values, text=comment, report=report)
    except IntegrityError:
        raise Conflict("You already reviewed this message.", code="already_reviewed") from None

    message.labels = tree_manager.labels_merge(message.labels, values)
    message.review_count += 1
    decided = None
    if message.review_result is None and message.review_count >= config.reviews_required(
            is_root=message.parent_id is None):
        decided = tree_manager.review_accepted(message.labels, config.acceptance_threshold)
    Message.objects.filter(pk=message.pk).update(
        labels=message.labels, review_count=message.review_count, reviews_pending=_decrement("reviews_pending"),
        review_result=decided if decided is not None else F("review_result"),
    )
    if decided is not None:
        message.review_result = decided
        _apply_review_decision(tree, message, decided, config)
    if report:
        _flag(message, reason=comment or "reported in a review", reporter=user, given=bool(comment))
    _task_finish(task, user, now, event=scoring.FULL_LABEL if review.mode == Review.Mode.FULL else scoring.SIMPLE_LABEL,
                 message_id=message.pk)
    return review


def _apply_review_decision(tree: MessageTree, message: Message, accepted: bool, config: TreeConfig) -> None:
    tree.awaiting_review = max(tree.awaiting_review - 1, 0)
    if accepted:
        tree.accepted_count += 1
        kind = (scoring.ACCEPTED_PROMPT if message.parent_id is None else
                scoring.ACCEPTED_ASSISTANT_REPLY if message.role == Role.ASSISTANT else scoring.ACCEPTED_PROMPTER_REPLY)
        event_record(user_id=message.author_id, kind=kind, message_id=message.pk)
    else:
        tree.message_count = max(tree.message_count - 1, 0)
        if message.parent_id:
            Message.objects.filter(pk=message.parent_id).update(children_count=_decrement("children_count"))
    tree.save(update_fields=["awaiting_review", "accepted_count", "message_count", "updated_at"])
    if message.parent_id is None:
        tree_transition(tree, tree_manager.state_after_prompt_review(accepted))
        if accepted:
            transaction.on_commit(lambda: lottery_activate(lang=tree.lang))
    else:
        _tree_check_growth(tree, config)


def _tree_check_growth(tree: MessageTree, config: TreeConfig) -> None:
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
        _tree_check_rankings(tree, config)


def _rankable_parents(tree: MessageTree, config: TreeConfig):
    roles = [Role.PROMPTER] + ([Role.ASSISTANT] if config.rank_prompter_replies else [])
    return Message.objects.filter(tree=tree, deleted=False, review_result=True, role__in=roles,
                                  children_count__gte=2)


def _tree_check_rankings(tree: MessageTree, config: TreeConfig) -> None:
    """Move a ranking tree on once every rankable parent has its rankings."""
    if tree.state != TreeState.RANKING:
        return
    if not _rankable_parents(tree, config).filter(ranking_count__lt=config.num_required_rankings).exists():
        tree_transition(tree, TreeState.READY_FOR_SCORING)
        from ranking.jobs import tree_score_job

        enqueue_on_commit(tree_score_job, str(tree.pk))


def tree_transition(tree: MessageTree, state: str) -> None:
    """Move a locked tree along one of SPEC's arrows; any other move is refused."""
    if not tree_manager.transition_allowed(tree.state, state):
        raise Conflict(f"A tree cannot move from {tree.state} to {state}.", code="invalid_transition")
    if state == TreeState.HALTED_BY_MODERATOR:
        tree.halted_from_state = tree.state
    tree.state = state
    if state == TreeState.GROWING and tree.activated_at is None:
        tree.activated_at = timezone.now()
    tree.save(update_fields=["state", "halted_from_state", "activated_at", "updated_at"])


def _ranking_submit(*, user: User, task: Task, ranking: object, not_rankable: bool):
    from ranking.models import Ranking

    check_can_work(user)
    config = tree_config()
    now = timezone.now()
    _check_task_open(task, user, now)
    if task.type not in RANK_TASKS:
        raise ServiceError("This task takes a text or labels, not a ranking.", code="wrong_submission")
    offered = [reply["id"] for reply in task.payload.get("reply_messages", [])]
    if not_rankable is True:
        if ranking:
            raise ServiceError("Send either a ranking or not_rankable, not both.", code="invalid_ranking")
        order: list[str] = []
    else:
        if not isinstance(ranking, list) or not all(isinstance(item, str) for item in ranking):
            raise ServiceError("ranking must be a list of message ids, best first.", code="invalid_ranking")
        if len(ranking) != len(offered) or set(ranking) != set(offered):
            raise ServiceError("The ranking must order exactly the offered replies, each once.",
                               code="invalid_ranking")
        order = list(ranking)

    if Message.objects.filter(pk__in=offered, author=user).exists():
        raise Forbidden("You cannot rank a set of replies that holds your own.", code="own_message")
    tree = tree_locked(task.tree_id)
    if tree.state != TreeState.RANKING:
        raise Conflict("This conversation is no longer being ranked: skip the task.", code="tree_not_ranking")
    try:  # the unique constraint refuses a second ranking; the whole transaction is then rolled back
        result = Ranking.objects.create(parent_id=task.item_id, user=user, task=task, ranking=order,
                                        not_rankable=not_rankable is True)
    except IntegrityError:
        raise Conflict("You already ranked these replies.", code="already_ranked") from None
    Message.objects.filter(pk=task.item_id).update(ranking_count=F("ranking_count") + 1,
                                                   rankings_pending=_decrement("rankings_pending"))
    _tree_check_rankings(tree, config)
    _task_finish(task, user, now, event=scoring.RANKING, message_id=task.item_id)
    return result


# --- Lottery, reactions, reports, moderation ---------------------------------------------------


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


def _message_for_update(message_id) -> tuple[MessageTree, Message]:
    """Lock a message's tree, then read the message (the tree lock guards all its writes)."""
    try:
        tree_id = Message.objects.filter(pk=message_id).values_list("tree_id", flat=True).get()
    except (Message.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such message.", code="message_not_found") from None
    tree = tree_locked(tree_id)
    return tree, Message.objects.get(pk=message_id)


def _visible_message_for_update(message_id) -> tuple[MessageTree, Message]:
    """Lock the tree of a message contributors may see, then read the message again under the lock
    (it may have been deleted meanwhile); a deleted message answers as an unknown id."""
    tree = tree_locked(selectors.visible_message(message_id).tree_id)
    return tree, selectors.visible_message(message_id)


@transaction.atomic
def emoji_set(*, user: User, message_id, emoji: object, op: object) -> dict[str, int]:
    """Add or remove one reaction; +1 and -1 exclude each other. Returns the message's counts."""
    check_can_work(user)
    if emoji not in Emoji.values:
        raise ServiceError(f"Unknown emoji {emoji!r}.", code="invalid_emoji")
    if op not in ("add", "remove"):
        raise ServiceError("op must be add or remove.", code="invalid_op")
    tree, message = _visible_message_for_update(message_id)
    if message.author_id == user.pk:
        raise Forbidden("You cannot react to your own message.", code="own_message")
    reactions = EmojiReaction.objects.filter(message=message, user=user)
    if op == "remove":
        reactions.filter(emoji=emoji).delete()
    elif not reactions.filter(emoji=emoji).exists():
        opposite = {"+1": "-1", "-1": "+1"}.get(emoji)
        if opposite:
            reactions.filter(emoji=opposite).delete()
        EmojiReaction.objects.create(message=message, user=user, emoji=emoji)
        if emoji == Emoji.RED_FLAG:
            _flag(message, reason="red flag", reporter=user, given=False)
    counts = dict(EmojiReaction.objects.filter(message=message).values_list("emoji").annotate(n=Count("id")))
    message.emojis = {code: counts[code] for code in Emoji.values if counts.get(code)}
    message.red_flags = counts.get(Emoji.RED_FLAG, 0)
    message.save(update_fields=["emojis", "red_flags"])
    _auto_moderate(tree, message)
    return message.emojis


@transaction.atomic
def message_report(*, user: User, message_id, reason: object) -> FlaggedMessage:
    """Report a message to the moderators, once per user and message; a red flag or a review's tick
    before it only gets the reason added."""
    check_can_work(user)
    if not isinstance(reason, str) or not reason.strip():
        raise ServiceError("Say why you report this message.", code="empty_reason")
    check_text(reason, what="reason", code="invalid_reason")
    if len(reason.strip()) > MAX_REASON:
        raise ServiceError(f"The reason is longer than {MAX_REASON} characters.", code="reason_too_long")
    _, message = _visible_message_for_update(message_id)
    if MessageReport.objects.filter(message=message, user=user).exclude(reason="").exists():
        raise Conflict("You have already reported this message.", code="already_reported")
    return _flag(message, reason=reason.strip(), reporter=user)


def _flag(message: Message, *, reason: str, reporter: User | None = None, given: bool = True) -> FlaggedMessage:
    """Put a message in the flagged queue. A reporter counts once per message: a later report of
    theirs only adds the reason they had not given yet (`given`: the reason is their own words)."""
    flag, _ = FlaggedMessage.objects.get_or_create(message=message)
    if reporter is not None:
        report, first = MessageReport.objects.get_or_create(message=message, user=reporter,
                                                            defaults={"reason": reason if given else ""})
        if not first:
            if given and not report.reason:
                report.reason = reason
                report.save(update_fields=["reason"])
                flag.reasons = (flag.reasons + [reason])[-20:]
                flag.save(update_fields=["reasons", "updated_at"])
            return flag
    flag.reports += 1
    flag.reasons = (flag.reasons + [reason])[-20:]
    flag.processed = False
    flag.save(update_fields=["reports", "reasons", "processed", "updated_at"])
    return flag


def _auto_moderate(tree: MessageTree, message: Message) -> None:
    config = tree_config()
    if not config.auto_mod_enabled or message.red_flags < config.auto_mod_red_flags or message.deleted:
        return
    if message.parent_id is None:
        if tree_manager.transition_allowed(tree.state, TreeState.ABORTED_LOW_GRADE):
            logger.info("tree %s aborted: its prompt has %s red flags", tree.pk, message.red_flags)
            tree_transition(tree, TreeState.ABORTED_LOW_GRADE)
    else:
        logger.info("message %s deleted with its subtree: %s red flags", message.pk, message.red_flags)
        _subtree_set_deleted(tree, message, deleted=True)


def _subtree_set_deleted(tree: MessageTree, message: Message, *, deleted: bool) -> int:
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
    _tree_after_structure_change(tree)
    return changed


def _tree_after_structure_change(tree: MessageTree) -> None:
    """After messages were deleted, undeleted or rejected by moderation, a growing tree may have
    reached its end and a ranking tree may have no parent left to rank: move them on."""
    config = tree_config()
    if tree.state == TreeState.GROWING:
        _tree_check_growth(tree, config)
    elif tree.state == TreeState.RANKING:
        _tree_check_rankings(tree, config)


def tree_counters_recompute(tree: MessageTree) -> None:
    """Recount a tree's counters from its messages and open tasks (after moderation or repair).
    The caller holds the tree lock; message rows are locked before the tasks are counted so that
    no concurrent claim is lost."""
    messages = list(Message.objects.select_for_update(no_key=True).filter(tree=tree))
    pending: dict = {}
    for item_id, task_type in selectors.open_tasks(tree=tree).values_list("item_id", "type"):
        field = _PENDING_FIELD.get(task_type)
        if field:
            pending.setdefault(item_id, Counter())[field] += 1
    live = [m for m in messages if not m.deleted and m.review_result is not False]
    children = Counter(m.parent_id for m in live if m.parent_id)
    changed = []
    for m in messages:
        values = {"children_count": children.get(m.pk, 0)}
        values.update({field: pending.get(m.pk, Counter())[field] for field in set(_PENDING_FIELD.values())})
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
        raise Conflict("This tree is not halted.", code="not_halted")
    tree_transition(tree, tree.halted_from_state)
    tree.halted_from_state = ""
    tree.save(update_fields=["halted_from_state"])
    if tree.state == TreeState.GROWING:
        tree.reply_skip_count = 0
        tree.save(update_fields=["reply_skip_count"])
        _tree_check_growth(tree, tree_config())
    return tree


@transaction.atomic
def tos_accept(*, user: User) -> User:
    if user.tos_accepted_at is None:
        user.tos_accepted_at = timezone.now()
        user.save(update_fields=["tos_accepted_at"])
    return user


# --- Moderation --------------------------------------------------------------------------------


def _message_state(message: Message) -> dict:
    return {"deleted": message.deleted, "review_result": message.review_result, "text": message.text}


def _ancestors(messages: dict, message: Message) -> list:
    chain, current = [], messages.get(message.parent_id)
    while current is not None:
        chain.append(current.pk)
        current = messages.get(current.parent_id)
    return chain


@transaction.atomic
def message_delete(*, actor: User, message_id, reason: str = "") -> int:
    """Soft-delete a message with its whole subtree; returns how many messages changed."""
    check_permission(actor, "tasks.moderate_message")
    tree, message = _message_for_update(message_id)
    changed = _subtree_set_deleted(tree, message, deleted=True)
    moderation_record(actor=actor, action="message_delete", target_type="message", target_id=message.pk,
                      reason=reason, before={"deleted": message.deleted}, after={"deleted": True, "changed": changed})
    return changed


@transaction.atomic
def message_undelete(*, actor: User, message_id, reason: str = "") -> int:
    """Undelete a message and its ancestors, so that it is reachable from its prompt again."""
    check_permission(actor, "tasks.moderate_message")
    tree, message = _message_for_update(message_id)
    messages = {m.pk: m for m in selectors.tree_messages(tree.pk)}
    ids = [message.pk, *_ancestors(messages, message)]
    changed = Message.objects.filter(pk__in=ids, deleted=True).update(deleted=False)
    tree_counters_recompute(tree)
    _tree_after_structure_change(tree)
    moderation_record(actor=actor, action="message_undelete", target_type="message", target_id=message.pk,
                      reason=reason, before={"deleted": message.deleted}, after={"deleted": False, "changed": changed})
    return changed


@transaction.atomic
def message_mark_spam(*, actor: User, message_id, reason: str = "") -> Message:
    """Reject a message as spam: it stops counting toward its tree; a prompt's tree is aborted."""
    check_permission(actor, "tasks.moderate_message")
    tree, message = _message_for_update(message_id)
    before = _message_state(message)
    Message.objects.filter(pk=message.pk).update(review_result=False)
    message.review_result = False
    tree_counters_recompute(tree)
    if message.parent_id is None and tree_manager.transition_allowed(tree.state, TreeState.ABORTED_LOW_GRADE):
        tree_transition(tree, TreeState.ABORTED_LOW_GRADE)
    else:
        _tree_after_structure_change(tree)
    moderation_record(actor=actor, action="message_mark_spam", target_type="message", target_id=message.pk,
                      reason=reason, before=before, after=_message_state(message))
    return message


@transaction.atomic
def message_edit(*, actor: User, message_id, text: object, reason: str = "") -> Message:
    """Edit a message's text; the previous text is kept as a revision."""
    from tasks.models import MessageRevision

    check_permission(actor, "tasks.moderate_message")
    text = clean_text(text, config=tree_config())
    _, message = _message_for_update(message_id)
    if text == message.text:
        raise ServiceError("The text is unchanged.", code="unchanged")
    MessageRevision.objects.create(message=message, text=message.text, editor=actor)
    before = _message_state(message)
    message.text, message.edited = text, True
    message.save(update_fields=["text", "edited"])
    moderation_record(actor=actor, action="message_edit", target_type="message", target_id=message.pk,
                      reason=reason, before=before, after=_message_state(message))
    return message


@transaction.atomic
def message_flag(*, actor: User, message_id, reason: str = "") -> FlaggedMessage:
    check_permission(actor, "tasks.moderate_message")
    reason = clean_reason(reason)
    _, message = _message_for_update(message_id)
    flag = _flag(message, reason=reason or f"flagged by moderator {actor.username}")
    moderation_record(actor=actor, action="message_flag", target_type="message", target_id=message.pk,
                      reason=reason)
    return flag


@transaction.atomic
def flag_resolve(*, actor: User, flag_id, decision: str, reason: str = "") -> FlaggedMessage:
    """Process a flagged-queue entry: dismiss it, delete the message, or delete it and ban its author."""
    check_permission(actor, "tasks.moderate_message")
    if decision not in ("dismiss", "delete", "ban"):
        raise ServiceError("decision must be dismiss, delete or ban.", code="invalid_decision")
    if not isinstance(reason, str) or len(reason.strip()) > MAX_MODERATION_REASON:
        raise ServiceError(f"The reason must be text of at most {MAX_MODERATION_REASON} characters.",
                           code="reason_too_long")
    reason = reason.strip()
    check_text(reason, what="reason", code="invalid_reason")
    try:
        flag = FlaggedMessage.objects.select_for_update(no_key=True).select_related("message").get(pk=flag_id)
    except (FlaggedMessage.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such flagged message.", code="flag_not_found") from None
    if decision in ("delete", "ban"):
        message_delete(actor=actor, message_id=flag.message_id, reason=reason or "flagged")
    if decision == "ban" and flag.message.author_id:
        from oasst.services import user_ban

        user_ban(actor=actor, user_id=flag.message.author_id, reason=reason or "flagged message")
    flag.processed = True
    flag.save(update_fields=["processed", "updated_at"])
    moderation_record(actor=actor, action=f"flag_{decision}", target_type="message", target_id=flag.message_id,
                      reason=reason)
    return flag


@transaction.atomic
def tree_move(*, actor: User, tree_id, state: str, reason: str = "") -> MessageTree:
    """Move a tree to another state along SPEC's arrows (halt, resume, abort, or the next state)."""
    check_permission(actor, "tasks.moderate_tree")
    if state not in TreeState.values:
        raise ServiceError(f"Unknown tree state {state!r}.", code="invalid_state")
    try:
        tree = tree_locked(tree_id)
    except (MessageTree.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such tree.", code="tree_not_found") from None
    before = {"state": tree.state}
    abortable = tree_manager.ACTIVE_STATES | {TreeState.HALTED_BY_MODERATOR}
    if state == TreeState.ABORTED_LOW_GRADE and tree.state in abortable:
        tree.state = TreeState.ABORTED_LOW_GRADE  # a moderator may abort any tree still in work
        tree.save(update_fields=["state", "updated_at"])
    elif tree.state == TreeState.HALTED_BY_MODERATOR and state == tree.halted_from_state:
        tree_resume(tree_id=tree.pk)
        tree.refresh_from_db()
    else:
        tree_transition(tree, state)
        if state == TreeState.RANKING:
            _tree_check_rankings(tree, tree_config())
        elif state == TreeState.READY_FOR_SCORING:
            from ranking.jobs import tree_score_job

            enqueue_on_commit(tree_score_job, str(tree.pk))
    moderation_record(actor=actor, action="tree_move", target_type="tree", target_id=tree.pk, reason=reason,
                      before=before, after={"state": tree.state})
    return tree
