"""Tree locking and state changes: the one place that says how a tree row is locked and which moves
between states are allowed. Small and free of the task queue, so that every writer of a tree (the
queue, submissions, moderation, scoring) takes the same lock the same way.

Locking, in one order everywhere so that no two transactions wait on each other in a cycle: the
task row, then the tree row (`tree_locked`), then message rows. Rows are locked FOR NO KEY UPDATE,
which does not block the KEY SHARE locks that the foreign-key checks of concurrent inserts take.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext

from oasst.errors import Conflict, NotFound
from tasks import selectors, tree_manager
from tasks.models import Message, MessageTree, TreeState


def tree_locked(tree_id) -> MessageTree:
    """Lock a tree row: every write to a tree and its messages happens under this lock."""
    return MessageTree.objects.select_for_update(no_key=True).get(pk=tree_id)


def tree_transition(tree: MessageTree, state: str) -> None:
    """Move a locked tree along one of SPEC's arrows; any other move is refused."""
    if not tree_manager.transition_allowed(tree.state, state):
        raise Conflict(gettext("A tree cannot move from %(old)s to %(new)s.") % {"old": tree.state, "new": state},
                       code="invalid_transition")
    if state == TreeState.HALTED_BY_MODERATOR:
        tree.halted_from_state = tree.state
    tree.state = state
    if state == TreeState.GROWING and tree.activated_at is None:
        tree.activated_at = timezone.now()
    tree.save(update_fields=["state", "halted_from_state", "activated_at", "updated_at"])


def message_for_update(message_id) -> tuple[MessageTree, Message]:
    """Lock a message's tree, then read the message (the tree lock guards all its writes)."""
    try:
        tree_id = Message.objects.filter(pk=message_id).values_list("tree_id", flat=True).get()
    except (Message.DoesNotExist, ValueError, TypeError):
        raise NotFound(gettext("No such message."), code="message_not_found") from None
    tree = tree_locked(tree_id)
    return tree, Message.objects.get(pk=message_id)


def visible_message_for_update(message_id) -> tuple[MessageTree, Message]:
    """Lock the tree of a message contributors may see, then read the message again under the lock
    (it may have been deleted meanwhile); a deleted message answers as an unknown id."""
    tree = tree_locked(selectors.visible_message(message_id).tree_id)
    return tree, selectors.visible_message(message_id)
