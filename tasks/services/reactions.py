"""Contributors' reactions to messages: emoji (+1/-1 exclude each other; red flags), reports to the
moderators, the flagged queue they fill, and auto-moderation once a message has enough red flags."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count
from django.utils.translation import gettext

from oasst.errors import Conflict, Forbidden, ServiceError
from oasst.models import User
from oasst.text import check_text
from tasks import tree_manager
from tasks.models import Emoji, EmojiReaction, FlaggedMessage, Message, MessageReport, MessageTree, TreeState
from tasks.services.common import MAX_REASON, check_can_work
from tasks.services.trees import subtree_set_deleted
from tasks.tree_manager import tree_config
from tasks.tree_state import tree_transition, visible_message_for_update

logger = logging.getLogger(__name__)


@transaction.atomic
def emoji_set(*, user: User, message_id, emoji: object, op: object) -> dict[str, int]:
    """Add or remove one reaction; +1 and -1 exclude each other. Returns the message's counts."""
    check_can_work(user)
    if emoji not in Emoji.values:
        raise ServiceError(gettext("Unknown emoji %(emoji)s.") % {"emoji": repr(emoji)}, code="invalid_emoji")
    if op not in ("add", "remove"):
        raise ServiceError(gettext("op must be add or remove."), code="invalid_op")
    tree, message = visible_message_for_update(message_id)
    if message.author_id == user.pk:
        raise Forbidden(gettext("You cannot react to your own message."), code="own_message")
    reactions = EmojiReaction.objects.filter(message=message, user=user)
    if op == "remove":
        reactions.filter(emoji=emoji).delete()
    elif not reactions.filter(emoji=emoji).exists():
        opposite = {"+1": "-1", "-1": "+1"}.get(emoji)
        if opposite:
            reactions.filter(emoji=opposite).delete()
        EmojiReaction.objects.create(message=message, user=user, emoji=emoji)
        if emoji == Emoji.RED_FLAG:
            flag_add(message, reason="red flag", reporter=user, given=False)
    counts = dict(EmojiReaction.objects.filter(message=message).values_list("emoji").annotate(n=Count("id")))
    message.emojis = {code: counts[code] for code in Emoji.values if counts.get(code)}
    message.red_flags = counts.get(Emoji.RED_FLAG, 0)
    message.save(update_fields=["emojis", "red_flags"])
    auto_moderate(tree, message)
    return message.emojis


@transaction.atomic
def message_report(*, user: User, message_id, reason: object) -> FlaggedMessage:
    """Report a message to the moderators, once per user and message; a red flag or a review's tick
    before it only gets the reason added."""
    check_can_work(user)
    if not isinstance(reason, str) or not reason.strip():
        raise ServiceError(gettext("Say why you report this message."), code="empty_reason")
    check_text(reason, what="reason", code="invalid_reason")
    if len(reason.strip()) > MAX_REASON:
        raise ServiceError(gettext("The reason is longer than %(max)s characters.") % {"max": MAX_REASON},
                           code="reason_too_long")
    _, message = visible_message_for_update(message_id)
    if MessageReport.objects.filter(message=message, user=user).exclude(reason="").exists():
        raise Conflict(gettext("You have already reported this message."), code="already_reported")
    return flag_add(message, reason=reason.strip(), reporter=user)


def flag_add(message: Message, *, reason: str, reporter: User | None = None, given: bool = True) -> FlaggedMessage:
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


def auto_moderate(tree: MessageTree, message: Message) -> None:
    config = tree_config()
    if not config.auto_mod_enabled or message.red_flags < config.auto_mod_red_flags or message.deleted:
        return
    if message.parent_id is None:
        if tree_manager.transition_allowed(tree.state, TreeState.ABORTED_LOW_GRADE):
            logger.info("tree %s aborted: its prompt has %s red flags", tree.pk, message.red_flags)
            tree_transition(tree, TreeState.ABORTED_LOW_GRADE)
    else:
        logger.info("message %s deleted with its subtree: %s red flags", message.pk, message.red_flags)
        subtree_set_deleted(tree, message, deleted=True)
