"""What an export selects, shared by its two writers (tasks.export in Python, tasks.export_pg on
PostgreSQL): the filters, the trees they choose, which messages survive the switches, the events,
and the seeded id hashes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef

from ranking.models import Ranking
from tasks.models import EmojiReaction, Message, MessageTree, TreeState

FORMATS = ("trees", "messages")


@dataclass(frozen=True)
class ExportFilters:
    states: tuple[str, ...] = (TreeState.READY_FOR_EXPORT,)
    langs: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    user_id: int | None = None
    include_deleted: bool = False
    include_spam: bool = False
    include_synthetic: bool = False
    tree_ids: tuple = ()
    labels: bool = False  # aggregated review labels on each message
    events: bool = False  # who reacted with which emoji, and each ranking, on the message concerned


def trees_for_export(filters: ExportFilters):
    trees = MessageTree.objects.all()
    if filters.states:
        trees = trees.filter(state__in=filters.states)
    if filters.langs:
        trees = trees.filter(lang__in=filters.langs)
    if filters.since:
        trees = trees.filter(created_at__gte=filters.since)
    if filters.until:
        trees = trees.filter(created_at__lt=filters.until)
    if filters.user_id is not None:
        trees = trees.filter(Exists(Message.objects.filter(tree=OuterRef("pk"), author_id=filters.user_id)))
    if filters.tree_ids:
        trees = trees.filter(pk__in=filters.tree_ids)
    return trees.order_by("created_at", "id")


def kept_ids(messages: Iterable[tuple]) -> set | None:
    """The ids of the messages (id, parent id, excluded by a switch) of one tree that the switches
    keep: a message left out takes its subtree with it. None when nothing is left out, the common
    case (then every message is kept, even one whose parent is missing)."""
    messages = list(messages)
    if not any(excluded for _, _, excluded in messages):
        return None
    by_id = {message[0]: message for message in messages}
    keep: dict = {}

    def kept(message: tuple) -> bool:
        message_id, parent_id, excluded = message
        if message_id not in keep:
            parent = by_id.get(parent_id) if parent_id else None
            keep[message_id] = not excluded and (not parent_id or (parent is not None and kept(parent)))
        return keep[message_id]

    for message in messages:  # parents first (by depth): the recursion stays shallow
        kept(message)
    return {message_id for message_id, is_kept in keep.items() if is_kept}


def events_by_message(message_ids: list) -> dict:
    """Events in the Open-Assistant export's shape: {"emoji": [...], "ranking": [...]} per message,
    keyed by the message id as a string."""
    events: dict = {}
    for message_id, user_id, emoji in (EmojiReaction.objects.filter(message_id__in=message_ids)
                                       .order_by("created_at").values_list("message_id", "user_id", "emoji")):
        events.setdefault(str(message_id), {}).setdefault("emoji", []).append(
            {"type": "emoji", "user_id": str(user_id), "emoji": emoji})
    for parent_id, user_id, order, not_rankable in (Ranking.objects.filter(parent_id__in=message_ids)
                                                    .order_by("created_at")
                                                    .values_list("parent_id", "user_id", "ranking", "not_rankable")):
        events.setdefault(str(parent_id), {}).setdefault("ranking", []).append(
            {"type": "ranking", "user_id": str(user_id) if user_id else None, "ranked_message_ids": list(order),
             "not_rankable": not_rankable})
    return events


def anonymizer(seed: str) -> Callable[[str], str]:
    """A stable id mapping: HMAC-SHA256 of the id keyed by the seed, formatted as a version 4 UUID
    (what `uuid.UUID(bytes=digest[:16], version=4)` gives, written out: this runs once per id)."""
    key = seed.encode()

    def anonymize(value: str) -> str:
        digest = bytearray(hmac.digest(key, str(value).encode(), hashlib.sha256)[:16])
        digest[6] = (digest[6] & 0x0F) | 0x40  # the version, 4
        digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
        text = digest.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    return anonymize


def anonymize_node(node: dict, anonymize: Callable[[str], str]) -> dict:
    """The ids of a node, its events and its replies, replaced in place by their hashes."""
    for key in ("message_id", "parent_id", "user_id", "message_tree_id"):
        if node.get(key):
            node[key] = anonymize(node[key])
    for events in node.get("events", {}).values():
        for event in events:
            if event.get("user_id"):
                event["user_id"] = anonymize(event["user_id"])
            if "ranked_message_ids" in event:
                event["ranked_message_ids"] = [anonymize(i) for i in event["ranked_message_ids"]]
    for reply in node.get("replies", ()):
        anonymize_node(reply, anonymize)
    return node
