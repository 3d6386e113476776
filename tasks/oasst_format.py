"""Messages in the oasst export format (tree and message nodes), as plain dicts.

Empty fields are omitted; replies are sorted by rank, unranked last.
"""

from __future__ import annotations

from collections.abc import Iterable

from tasks.models import Message, MessageTree


def message_node(message: Message, *, tree: MessageTree | None = None, flat: bool = False) -> dict:
    node = {
        "message_id": str(message.pk),
        "parent_id": str(message.parent_id) if message.parent_id else None,
        "user_id": str(message.author_id) if message.author_id else None,
        "created_date": message.created_at.isoformat() if message.created_at else None,
        "text": message.text,
        "role": message.role,
        "lang": message.lang,
        "review_count": message.review_count,
        "review_result": message.review_result,
        "deleted": message.deleted,
        "rank": message.rank,
        "synthetic": message.synthetic,
        "model_name": message.model_name or None,
        "emojis": message.emojis or None,
        "labels": message.labels or None,
    }
    if flat and tree is not None:
        node["message_tree_id"] = str(tree.pk)
        node["tree_state"] = tree.state
    # Empty fields are omitted; False and 0 are values, not empty.
    return {key: value for key, value in node.items() if value is not None and value != ""}


def _rank_key(message: Message):
    return (message.rank is None, message.rank if message.rank is not None else 0, message.created_at)


def tree_node(tree: MessageTree, messages: Iterable[Message]) -> dict | None:
    """The tree as one nested object: {message_tree_id, tree_state, prompt, origin}."""
    messages = list(messages)
    children: dict = {}
    root = None
    for message in messages:
        if message.parent_id is None:
            root = message
        else:
            children.setdefault(message.parent_id, []).append(message)
    if root is None:
        return None

    def build(message: Message) -> dict:
        node = message_node(message)
        node["replies"] = [build(child) for child in sorted(children.get(message.pk, []), key=_rank_key)]
        return node

    return {"message_tree_id": str(tree.pk), "tree_state": tree.state, "prompt": build(root), "origin": tree.origin}
