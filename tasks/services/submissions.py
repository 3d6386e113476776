"""Submitting tasks: a prompt or reply, a review (labels), a ranking; and reward-model scores
written on messages (training's score_messages)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext

from oasst.errors import Conflict, Forbidden, ServiceError
from oasst.models import User
from oasst.text import check_text
from ranking import scoring
from ranking.services import ranking_create
from tasks import tree_manager
from tasks.models import Message, MessageTree, Review, Role, ServingScorer, Task, TaskType, TreeState
from tasks.services.common import (
    LABEL_TASKS,
    MAX_CLIENT_ID,
    RANK_TASKS,
    TEXT_TASKS,
    check_can_work,
    check_task_open,
    clean_text,
    count_decrement,
    task_finish,
    task_locked,
)
from tasks.services.reactions import flag_add
from tasks.services.trees import review_decision_apply, tree_check_rankings
from tasks.tree_manager import tree_config
from tasks.tree_state import tree_locked


@transaction.atomic
def task_submit(*, user: User, task_id, text: object = None, client_id: object = "", ranking: object = None,
                not_rankable: bool = False, labels: object = None, report: bool = False):
    """Submit a task of any type: a text, a ranking or labels, by the task's type."""
    task = task_locked(task_id)
    if task.type in RANK_TASKS:
        return _ranking_submit(user=user, task=task, ranking=ranking, not_rankable=not_rankable)
    if task.type in LABEL_TASKS:
        return _labels_submit(user=user, task=task, labels=labels, text=text or "", report=report)
    return _text_submit(user=user, task=task, text=text, client_id=client_id)


@transaction.atomic
def text_submit(*, user: User, task_id, text: object, client_id: object = "") -> Message:
    """A prompt or a reply. A retry with the same client_id returns the message already created."""
    return _text_submit(user=user, task=task_locked(task_id), text=text, client_id=client_id)


@transaction.atomic
def labels_submit(*, user: User, task_id, labels: object, text: object = "", report: bool = False) -> Review:
    """A review: labels for one message; the last required review decides acceptance."""
    return _labels_submit(user=user, task=task_locked(task_id), labels=labels, text=text, report=report)


@transaction.atomic
def ranking_submit(*, user: User, task_id, ranking: object = None, not_rankable: bool = False):
    """A ranking of the offered replies, best first, or "not rankable" (all of them are bad)."""
    return _ranking_submit(user=user, task=task_locked(task_id), ranking=ranking, not_rankable=not_rankable)


def _text_submit(*, user: User, task: Task, text: object, client_id: object) -> Message:
    check_can_work(user)
    config = tree_config()
    now = timezone.now()
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID:
        raise ServiceError(gettext("client_id must be a string of at most %(max)s characters.")
                           % {"max": MAX_CLIENT_ID}, code="invalid_client_id")
    check_text(client_id, what="client_id", code="invalid_client_id")
    if task.done and client_id and task.user_id == user.pk:
        retried = Message.objects.filter(task=task, client_id=client_id).first()
        if retried is not None:
            return retried
    check_task_open(task, user, now)
    if task.type not in TEXT_TASKS:
        raise ServiceError(gettext("This task takes labels or a ranking, not a text."), code="wrong_submission")
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
            raise Conflict(gettext("This client_id was already used for another message."), code="duplicate_client_id")
        if task.item_id and clash_parent_id == task.item_id:
            raise Conflict(gettext("You already replied to this message."), code="already_replied")
        if clash_text == text:
            raise Conflict(gettext("You sent the same text recently."), code="duplicate_text")

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
            raise Conflict(gettext("This conversation no longer takes replies: skip the task."), code="parent_closed")
        message = Message.objects.create(
            tree=tree, parent=parent, author=user, task=task, client_id=client_id,
            role=Role.ASSISTANT if parent.role == Role.PROMPTER else Role.PROMPTER,
            text=text, lang=task.lang, depth=parent.depth + 1,
        )
        still_open = Message.objects.filter(pk=parent.pk, deleted=False, review_result=True).update(
            children_count=F("children_count") + 1, replies_pending=count_decrement("replies_pending"))
        if not still_open:  # deleted by a moderator since the task was read
            raise Conflict(gettext("This conversation no longer takes replies: skip the task."), code="parent_closed")
        tree.message_count += 1
        tree.awaiting_review += 1
        tree.replies_pending = max(tree.replies_pending - 1, 0)
        tree.save(update_fields=["message_count", "awaiting_review", "replies_pending", "updated_at"])
    event = {Role.ASSISTANT: scoring.ASSISTANT_REPLY, Role.PROMPTER: scoring.PROMPTER_REPLY}[message.role]
    task_finish(task, user, now, event=scoring.PROMPT if message.parent_id is None else event,
                 message_id=message.pk)
    return message


def _check_labels(labels: object, payload: Mapping) -> dict[str, float]:
    if not isinstance(labels, dict) or not labels:
        raise ServiceError(gettext("labels must be an object of label name -> value."), code="invalid_labels")
    valid = payload.get("valid_labels", [])
    unknown = sorted(set(labels) - set(valid))
    if unknown:
        raise ServiceError(gettext("Labels not valid for this task: %(labels)s.") % {"labels": ", ".join(unknown)},
                           code="invalid_labels")
    missing = [name for name in payload.get("mandatory_labels", []) if name not in labels]
    if missing:
        raise ServiceError(gettext("Mandatory labels missing: %(labels)s.") % {"labels": ", ".join(missing)},
                           code="missing_labels")
    for name, value in labels.items():
        error = tree_manager.label_value_error(name, value)
        if error:
            raise ServiceError(error, code="invalid_label_value")
    return {name: float(value) for name, value in labels.items()}


def _labels_submit(*, user: User, task: Task, labels: object, text: object, report: bool) -> Review:
    check_can_work(user)
    config = tree_config()
    now = timezone.now()
    check_task_open(task, user, now)
    if task.type not in LABEL_TASKS:
        raise ServiceError(gettext("This task takes a text or a ranking, not labels."), code="wrong_submission")
    values = _check_labels(labels, task.payload)
    comment = clean_text(text, config=config, field="comment", allow_empty=True)
    if not isinstance(report, bool):
        raise ServiceError(gettext("report must be true or false."), code="invalid_report")

    message = task.item
    if message.author_id == user.pk:
        raise Forbidden(gettext("You cannot review your own message."), code="own_message")
    tree = tree_locked(task.tree_id)
    message.refresh_from_db(fields=["labels", "review_count", "review_result", "deleted"])
    review_state = TreeState.INITIAL_PROMPT_REVIEW if message.parent_id is None else TreeState.GROWING
    if message.deleted or tree.state != review_state:  # deleted, halted or moved on since the task was handed out
        raise Conflict(gettext("This message is no longer under review: skip the task."), code="review_closed")
    try:  # the unique constraint refuses a second review; the whole transaction is then rolled back
        review = Review.objects.create(message=message, user=user, task=task, mode=task.payload.get("mode", "simple"),
                                       labels=values, text=comment, report=report)
    except IntegrityError:
        raise Conflict(gettext("You already reviewed this message."), code="already_reviewed") from None

    message.labels = tree_manager.labels_merge(message.labels, values)
    message.review_count += 1
    decided = None
    if message.review_result is None and message.review_count >= config.reviews_required(
            is_root=message.parent_id is None):
        decided = tree_manager.review_accepted(message.labels, config.acceptance_threshold)
    Message.objects.filter(pk=message.pk).update(
        labels=message.labels, review_count=message.review_count, reviews_pending=count_decrement("reviews_pending"),
        review_result=decided if decided is not None else F("review_result"),
    )
    if decided is not None:
        message.review_result = decided
        review_decision_apply(tree, message, decided, config)
    if report:
        flag_add(message, reason=comment or "reported in a review", reporter=user, given=bool(comment))
    task_finish(task, user, now, event=scoring.FULL_LABEL if review.mode == Review.Mode.FULL else scoring.SIMPLE_LABEL,
                 message_id=message.pk)
    return review


def _ranking_submit(*, user: User, task: Task, ranking: object, not_rankable: bool):
    check_can_work(user)
    config = tree_config()
    now = timezone.now()
    check_task_open(task, user, now)
    if task.type not in RANK_TASKS:
        raise ServiceError(gettext("This task takes a text or labels, not a ranking."), code="wrong_submission")
    offered = [reply["id"] for reply in task.payload.get("reply_messages", [])]
    if not_rankable is True:
        if ranking:
            raise ServiceError(gettext("Send either a ranking or not_rankable, not both."), code="invalid_ranking")
        order: list[str] = []
    else:
        if not isinstance(ranking, list) or not all(isinstance(item, str) for item in ranking):
            raise ServiceError(gettext("ranking must be a list of message ids, best first."), code="invalid_ranking")
        if len(ranking) != len(offered) or set(ranking) != set(offered):
            raise ServiceError(gettext("The ranking must order exactly the offered replies, each once."),
                               code="invalid_ranking")
        order = list(ranking)

    if Message.objects.filter(pk__in=offered, author=user).exists():
        raise Forbidden(gettext("You cannot rank a set of replies that holds your own."), code="own_message")
    tree = tree_locked(task.tree_id)
    if tree.state != TreeState.RANKING:
        raise Conflict(gettext("This conversation is no longer being ranked: skip the task."), code="tree_not_ranking")
    result = ranking_create(parent_id=task.item_id, user=user, task=task, order=order,
                            not_rankable=not_rankable is True)
    Message.objects.filter(pk=task.item_id).update(ranking_count=F("ranking_count") + 1,
                                                   rankings_pending=count_decrement("rankings_pending"))
    tree_check_rankings(tree, config)
    task_finish(task, user, now, event=scoring.RANKING, message_id=task.item_id)
    return result


@transaction.atomic
def message_reward_scores_set(*, scores: dict, run_id: int | None = None) -> int:
    """Reward-model scores by message id, written in batches with the id of the training run whose model gave
    them (None: a model no run is known for); returns how many messages were updated."""
    messages = list(Message.objects.filter(pk__in=scores).only("pk"))
    for message in messages:
        message.reward_score = scores[message.pk]
        message.reward_run_id = run_id
    return Message.objects.bulk_update(messages, ["reward_score", "reward_run_id"], batch_size=500)


@transaction.atomic
def serving_scorer_set(*, run_id: int | None) -> ServingScorer:
    """Record which training run's reward model is in service (None: none is); the ranking queue then weighs only
    the scores that run wrote. Called by training.serving in the transaction that puts a run in or out of service."""
    scorer, _ = ServingScorer.objects.update_or_create(pk=ServingScorer.SINGLETON, defaults={"run_id": run_id})
    return scorer
