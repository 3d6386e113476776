"""Content moderation: deleting and undeleting messages (with their subtrees), marking spam, editing,
flagging, resolving the flagged queue (dismiss, delete, delete and ban the author), moving trees,
and purging a user's messages. Each checks the permission and writes the audit log.

Receivers of oasst.signals (connected in tasks.apps): a banned or deleted user's open tasks are
released (user_open_tasks_release)."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext

from oasst.audit import check_permission, clean_reason, moderation_record
from oasst.enqueue import enqueue_on_commit
from oasst.errors import NotFound, ServiceError
from oasst.models import User
from oasst.moderation import moderated_user, user_ban
from oasst.text import check_text
from tasks import selectors, tree_manager
from tasks.models import FlaggedMessage, Message, MessageRevision, MessageTree, TreeState
from tasks.scoring import tree_score_job
from tasks.services.common import MAX_MODERATION_REASON, clean_text
from tasks.services.queue import user_open_tasks_release
from tasks.services.reactions import flag_add
from tasks.services.trees import (
    subtree_set_deleted,
    tree_after_structure_change,
    tree_check_rankings,
    tree_counters_recompute,
    tree_resume,
)
from tasks.tree_manager import tree_config
from tasks.tree_state import message_for_update, tree_locked, tree_transition


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
    tree, message = message_for_update(message_id)
    changed = subtree_set_deleted(tree, message, deleted=True)
    moderation_record(actor=actor, action="message_delete", target_type="message", target_id=message.pk,
                      reason=reason, before={"deleted": message.deleted}, after={"deleted": True, "changed": changed})
    return changed


@transaction.atomic
def message_undelete(*, actor: User, message_id, reason: str = "") -> int:
    """Undelete a message and its ancestors, so that it is reachable from its prompt again."""
    check_permission(actor, "tasks.moderate_message")
    tree, message = message_for_update(message_id)
    messages = {m.pk: m for m in selectors.tree_messages(tree.pk)}
    ids = [message.pk, *_ancestors(messages, message)]
    changed = Message.objects.filter(pk__in=ids, deleted=True).update(deleted=False)
    tree_counters_recompute(tree)
    tree_after_structure_change(tree)
    moderation_record(actor=actor, action="message_undelete", target_type="message", target_id=message.pk,
                      reason=reason, before={"deleted": message.deleted}, after={"deleted": False, "changed": changed})
    return changed


@transaction.atomic
def message_mark_spam(*, actor: User, message_id, reason: str = "") -> Message:
    """Reject a message as spam: it stops counting toward its tree; a prompt's tree is aborted."""
    check_permission(actor, "tasks.moderate_message")
    tree, message = message_for_update(message_id)
    before = _message_state(message)
    Message.objects.filter(pk=message.pk).update(review_result=False)
    message.review_result = False
    tree_counters_recompute(tree)
    if message.parent_id is None and tree_manager.transition_allowed(tree.state, TreeState.ABORTED_LOW_GRADE):
        tree_transition(tree, TreeState.ABORTED_LOW_GRADE)
    else:
        tree_after_structure_change(tree)
    moderation_record(actor=actor, action="message_mark_spam", target_type="message", target_id=message.pk,
                      reason=reason, before=before, after=_message_state(message))
    return message


@transaction.atomic
def message_edit(*, actor: User, message_id, text: object, reason: str = "") -> Message:
    """Edit a message's text; the previous text is kept as a revision."""

    check_permission(actor, "tasks.moderate_message")
    text = clean_text(text, config=tree_config())
    _, message = message_for_update(message_id)
    if text == message.text:
        raise ServiceError(gettext("The text is unchanged."), code="unchanged")
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
    _, message = message_for_update(message_id)
    flag = flag_add(message, reason=reason or f"flagged by moderator {actor.username}")
    moderation_record(actor=actor, action="message_flag", target_type="message", target_id=message.pk,
                      reason=reason)
    return flag


@transaction.atomic
def flag_resolve(*, actor: User, flag_id, decision: str, reason: str = "") -> FlaggedMessage:
    """Process a flagged-queue entry: dismiss it, delete the message, or delete it and ban its author."""
    check_permission(actor, "tasks.moderate_message")
    if decision not in ("dismiss", "delete", "ban"):
        raise ServiceError(gettext("decision must be dismiss, delete or ban."), code="invalid_decision")
    if not isinstance(reason, str) or len(reason.strip()) > MAX_MODERATION_REASON:
        raise ServiceError(gettext("The reason must be text of at most %(max)s characters.")
                           % {"max": MAX_MODERATION_REASON}, code="reason_too_long")
    reason = reason.strip()
    check_text(reason, what="reason", code="invalid_reason")
    try:
        flag = FlaggedMessage.objects.select_for_update(no_key=True).select_related("message").get(pk=flag_id)
    except (FlaggedMessage.DoesNotExist, ValueError, TypeError):
        raise NotFound(gettext("No such flagged message."), code="flag_not_found") from None
    if decision in ("delete", "ban"):
        message_delete(actor=actor, message_id=flag.message_id, reason=reason or "flagged")
    if decision == "ban" and flag.message.author_id:
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
        raise ServiceError(gettext("Unknown tree state %(state)s.") % {"state": repr(state)}, code="invalid_state")
    try:
        tree = tree_locked(tree_id)
    except (MessageTree.DoesNotExist, ValueError, TypeError):
        raise NotFound(gettext("No such tree."), code="tree_not_found") from None
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
            tree_check_rankings(tree, tree_config())
        elif state == TreeState.READY_FOR_SCORING:
            enqueue_on_commit(tree_score_job, str(tree.pk))
    moderation_record(actor=actor, action="tree_move", target_type="tree", target_id=tree.pk, reason=reason,
                      before=before, after={"state": tree.state})
    return tree


def user_purge_messages(*, actor: User, user_id, since=None, until=None, reason: str = "") -> int:
    """Soft-delete a user's messages (each with its subtree) created within [since, until]; returns
    how many messages were deleted. Each message is deleted in its own short transaction."""
    moderated_user(actor, user_id, action="purge the messages of", lock=False)
    if since and until and since > until:
        raise ServiceError(gettext("The start of the range is after its end."), code="invalid_range")
    messages = Message.objects.filter(author_id=user_id, deleted=False)
    if since:
        messages = messages.filter(created_at__gte=since)
    if until:
        messages = messages.filter(created_at__lte=until)
    deleted = 0
    for message_id in messages.order_by("depth").values_list("pk", flat=True):
        if Message.objects.filter(pk=message_id, deleted=False).exists():  # not already gone with a parent
            deleted += message_delete(actor=actor, message_id=message_id, reason=reason or "purge")
    moderation_record(actor=actor, action="user_purge", target_type="user", target_id=user_id, reason=reason,
                      after={"deleted": deleted, "since": since.isoformat() if since else None,
                             "until": until.isoformat() if until else None})
    return deleted


def open_tasks_release_on_user_signal(sender, *, user: User, **kwargs) -> None:
    """Receiver of oasst.signals.user_banned and account_deleted (connected in tasks.apps): a banned or
    deleted user's open tasks give back the work they reserved."""
    user_open_tasks_release(user=user)
