"""What the task services share: the task types by kind, limits, and the checks every submission
and claim makes (the user may work, the task is theirs and open, the text is clean)."""

from __future__ import annotations

from django.db.models import F
from django.db.models.functions import Greatest
from django.utils.translation import gettext, gettext_noop

from oasst.errors import Conflict, Forbidden, NotFound, ServiceError
from oasst.languages import LANGUAGES
from oasst.models import User
from oasst.text import check_text
from ranking.events import event_record, streak_record
from tasks.models import Task, TaskType
from tasks.tree_manager import TreeConfig

TEXT_TASKS = {TaskType.INITIAL_PROMPT, TaskType.PROMPTER_REPLY, TaskType.ASSISTANT_REPLY}
RANK_TASKS = {TaskType.RANK_ASSISTANT_REPLIES, TaskType.RANK_PROMPTER_REPLIES, TaskType.RANK_INITIAL_PROMPTS}
LABEL_TASKS = {TaskType.LABEL_INITIAL_PROMPT, TaskType.LABEL_PROMPTER_REPLY, TaskType.LABEL_ASSISTANT_REPLY}
PENDING_FIELD = {
    **dict.fromkeys(LABEL_TASKS, "reviews_pending"),
    **dict.fromkeys(RANK_TASKS, "rankings_pending"),
    TaskType.ASSISTANT_REPLY: "replies_pending",
    TaskType.PROMPTER_REPLY: "replies_pending",
}
MAX_CLIENT_ID = 64
MAX_REASON = 512
MAX_MODERATION_REASON = 500  # as the moderation API's and the admin's forms
MAX_RANKING_LENGTH = 100  # far more replies than any parent has: a bound on the request, not a rule


def count_decrement(field: str):
    """A counter one lower, never below zero (an UPDATE expression)."""
    return Greatest(F(field) - 1, 0)


def check_can_work(user: User) -> None:
    if user.is_banned:
        raise Forbidden(gettext("Your account is banned from contributing."), code="banned")
    if user.tos_accepted_at is None:
        raise Forbidden(gettext("Accept the terms of service before you contribute."), code="tos_not_accepted")


def check_language(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ServiceError(gettext("Unknown language %(lang)s.") % {"lang": repr(lang)}, code="invalid_language")


# Whole sentences per field (never "The %(field)s ..."): a translator needs the noun's gender and case.
TEXT_FIELD_ERRORS = {
    "text": (gettext_noop("The text must be a string."), gettext_noop("The text is empty."),
             gettext_noop("The text is longer than %(max)s characters.")),
    "comment": (gettext_noop("The comment must be a string."), gettext_noop("The comment is empty."),
                gettext_noop("The comment is longer than %(max)s characters.")),
}


def clean_text(text: object, *, config: TreeConfig, field: str = "text", allow_empty: bool = False) -> str:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ServiceError(gettext(TEXT_FIELD_ERRORS[field][0]), code=f"invalid_{field}")
    text = text.strip()
    check_text(text, what=field, code=f"invalid_{field}")
    if not text and not allow_empty:
        raise ServiceError(gettext(TEXT_FIELD_ERRORS[field][1]), code=f"empty_{field}")
    if len(text) > config.max_text_length:
        raise ServiceError(gettext(TEXT_FIELD_ERRORS[field][2]) % {"max": config.max_text_length},
                           code=f"{field}_too_long")
    return text


def task_locked(task_id) -> Task:
    """Lock a task row (its item comes along in the same statement)."""
    try:
        return Task.objects.select_related("item").select_for_update(of=("self",), no_key=True).get(pk=task_id)
    except (Task.DoesNotExist, ValueError, TypeError):
        raise NotFound(gettext("No such task."), code="task_not_found") from None


def check_task_open(task: Task, user: User, now) -> None:
    if task.user_id != user.pk:
        raise NotFound(gettext("No such task."), code="task_not_found")  # another user's task is not disclosed
    if task.done:
        raise Conflict(gettext("This task is already done."), code="task_done")
    if task.skipped:
        raise Conflict(gettext("This task was skipped."), code="task_skipped")
    if task.expired or task.expires_at <= now:
        raise Conflict(gettext("This task has expired."), code="task_expired")


def task_finish(task: Task, user: User, now, *, event: str, message_id) -> None:
    """Close the task, record what the user earned, and keep their streak."""
    Task.objects.filter(pk=task.pk).update(done=True, done_at=now, acked_at=task.acked_at or now)
    event_record(user_id=user.pk, kind=event, message_id=message_id, at=now)
    streak_record(user=user, now=now)
