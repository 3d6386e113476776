"""The oasst export: trees or flat messages as JSON Lines (gzip for `.gz`), streamed, with a manifest.

Trees are read in chunks, and each chunk's messages in one query, so memory stays flat whatever
the size of the database.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from django.db.models import Exists, OuterRef, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from ranking.models import Ranking
from tasks.models import EmojiReaction, Message, MessageTree, TreeState
from tasks.oasst_format import message_node, tree_node

EXPORT_PERMISSION = "tasks.export_trees"
FORMATS = ("trees", "messages")
TREE_CHUNK_SIZE = 500
GZIP_LEVEL = 6  # gzip's default; Python's 9 was 15% slower for an 8% smaller file (bench/export.py)


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


@dataclass
class ExportResult:
    path: str
    format: str
    trees: int = 0
    messages: int = 0
    sha256: str = ""
    manifest_path: str = ""
    filters: dict = field(default_factory=dict)


def can_export(user) -> bool:
    """Whether the user may download exports, by any route (the API, the admin): exports carry what
    the site never shows (deleted and spam messages, author ids), so researchers (the export_trees
    permission) and superusers only; being staff or a moderator grants nothing."""
    return bool(user is not None and user.is_active and user.has_perm(EXPORT_PERMISSION))


def can_export_real_ids(user) -> bool:
    """Real ids link contributions to accounts: a superuser's explicit choice, never a default."""
    return can_export(user) and user.is_superuser


def release_seed(seed: str | None = None) -> tuple[str, str]:
    """The seed of an anonymised release and where it came from: the one given, the operator's
    OASST_EXPORT_ANONYMIZE_SEED (stable ids across releases), or a fresh random one (releases cannot
    be linked). The seed itself is never written down: with it, anyone could hash the small, dense
    user ids and reverse the mapping."""
    from django.conf import settings

    if seed:
        return seed, "option"
    if settings.EXPORT_ANONYMIZE_SEED:
        return settings.EXPORT_ANONYMIZE_SEED, "settings"
    return secrets.token_urlsafe(32), "random"


def anonymizer(seed: str) -> Callable[[str], str]:
    """A stable id mapping: HMAC-SHA256 of the id keyed by the seed, formatted as a UUID."""
    key = seed.encode()

    def anonymize(value: str) -> str:
        digest = hmac.new(key, str(value).encode(), hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    return anonymize


class MessageRow:
    """The columns of a message the export reads: fetched as plain tuples, far cheaper than models,
    and shaped like a Message for `tasks.oasst_format`."""

    COLUMNS = ("id", "tree_id", "parent_id", "author_id", "created_at", "text", "role", "lang", "review_count",
               "review_result", "deleted", "rank", "synthetic", "model_name", "depth", "emojis_json", "labels_json")
    __slots__ = ("pk", *COLUMNS[1:-2], "emojis", "labels")

    def __init__(self, values: tuple):
        (self.pk, self.tree_id, self.parent_id, self.author_id, self.created_at, self.text, self.role, self.lang,
         self.review_count, self.review_result, self.deleted, self.rank, self.synthetic, self.model_name, self.depth,
         self.emojis, self.labels) = values
        # JSON read as text and decoded here: most messages have no emojis or labels, and "{}" is free.
        self.emojis = _json_object(self.emojis)
        self.labels = _json_object(self.labels)


def _json_object(raw: str | None) -> dict:
    return {} if raw in (None, "", "{}") else json.loads(raw)


def _message_rows(tree_ids: list) -> list[MessageRow]:
    """The messages of a chunk of trees in one query, parents before children."""
    rows = (Message.objects.filter(tree_id__in=tree_ids)
            .annotate(emojis_json=Cast("emojis", TextField()), labels_json=Cast("labels", TextField()))
            .order_by("depth", "created_at", "id").values_list(*MessageRow.COLUMNS))
    return [MessageRow(values) for values in rows]


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


def export_lines(*, filters: ExportFilters, fmt: str = "trees", anonymize_seed: str | None = None) -> Iterator[str]:
    """The export as JSON lines, for a streamed HTTP response."""
    for record, _ in export_records(filters=filters, fmt=fmt, anonymize_seed=anonymize_seed):
        yield json.dumps(record, ensure_ascii=False) + "\n"


def nightly_export(*, folder: str | Path, keep: int, now: datetime | None = None) -> ExportResult:
    """The default export (ready_for_export trees) to a dated gzip file, anonymised (see
    `release_seed`) as the files may be published; older ones beyond `keep` are removed with their
    manifests."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = now or timezone.now()
    seed, seed_source = release_seed()
    result = export_to_file(path=folder / f"oasst-trees-{now:%Y%m%d-%H%M%S}.jsonl.gz", filters=ExportFilters(),
                            anonymize_seed=seed, seed_source=seed_source)
    exports = sorted(folder.glob("oasst-trees-*.jsonl.gz"))
    for old in exports[:-keep] if keep > 0 else []:
        old.unlink()
        manifest_path_for(old).unlink(missing_ok=True)
    return result


def _kept_messages(messages: list[MessageRow], filters: ExportFilters) -> list[MessageRow]:
    """The messages that pass the switches; a message left out takes its subtree with it."""
    def excluded(message: MessageRow) -> bool:
        return ((message.deleted and not filters.include_deleted)
                or (message.review_result is False and not filters.include_spam)
                or (message.synthetic and not filters.include_synthetic))

    if not any(map(excluded, messages)):  # the common case: nothing to leave out
        return messages
    by_id = {m.pk: m for m in messages}
    keep: dict = {}

    def kept(message: MessageRow) -> bool:
        if message.pk not in keep:
            parent = by_id.get(message.parent_id) if message.parent_id else None
            keep[message.pk] = not excluded(message) and (message.parent_id is None or
                                                          (parent is not None and kept(parent)))
        return keep[message.pk]

    for message in messages:  # parents first (by depth): the recursion stays shallow
        kept(message)
    return [m for m in messages if keep[m.pk]]


def _chunks(iterable: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _anonymize_node(node: dict, anonymize: Callable[[str], str]) -> dict:
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
        _anonymize_node(reply, anonymize)
    return node


def _events_by_message(message_ids: list) -> dict:
    """Events in the Open-Assistant export's shape: {"emoji": [...], "ranking": [...]} per message."""
    events: dict = {}
    for message_id, user_id, emoji in (EmojiReaction.objects.filter(message_id__in=message_ids)
                                       .order_by("created_at").values_list("message_id", "user_id", "emoji")):
        events.setdefault(message_id, {}).setdefault("emoji", []).append(
            {"type": "emoji", "user_id": str(user_id), "emoji": emoji})
    for parent_id, user_id, order, not_rankable in (Ranking.objects.filter(parent_id__in=message_ids)
                                                    .order_by("created_at")
                                                    .values_list("parent_id", "user_id", "ranking", "not_rankable")):
        events.setdefault(parent_id, {}).setdefault("ranking", []).append(
            {"type": "ranking", "user_id": str(user_id) if user_id else None, "ranked_message_ids": list(order),
             "not_rankable": not_rankable})
    return events


def _decorate(node: dict, filters: ExportFilters, events: dict) -> dict:
    """Drop or add the optional parts of a node (and its replies) as the export asks."""
    if not filters.labels:
        node.pop("labels", None)
    if filters.events:
        found = events.get(uuid.UUID(node["message_id"]))
        if found:
            node["events"] = found
    for reply in node.get("replies", ()):
        _decorate(reply, filters, events)
    return node


def export_records(*, filters: ExportFilters, fmt: str = "trees", anonymize_seed: str | None = None,
                   chunk_size: int = TREE_CHUNK_SIZE) -> Iterator[tuple[dict, int]]:
    """Yields (record, message count) per tree (trees format) or per message (messages format)."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    anonymize = anonymizer(anonymize_seed) if anonymize_seed is not None else None
    trees = trees_for_export(filters).iterator(chunk_size=chunk_size)
    for tree_chunk in _chunks(trees, chunk_size):
        by_tree: dict = {tree.pk: [] for tree in tree_chunk}
        rows = _message_rows(list(by_tree))
        for message in rows:
            by_tree[message.tree_id].append(message)
        events = _events_by_message([m.pk for m in rows]) if filters.events else {}
        for tree in tree_chunk:
            kept = _kept_messages(by_tree[tree.pk], filters)
            if not kept:
                continue
            if fmt == "trees":
                record = tree_node(tree, kept)
                if record is None:
                    continue
                _decorate(record["prompt"], filters, events)
                if anonymize:
                    record["message_tree_id"] = anonymize(record["message_tree_id"])
                    _anonymize_node(record["prompt"], anonymize)
                yield record, len(kept)
            else:
                for message in kept:
                    if filters.user_id is not None and message.author_id != filters.user_id:
                        continue
                    node = _decorate(message_node(message, tree=tree, flat=True), filters, events)
                    yield (_anonymize_node(node, anonymize) if anonymize else node), 1


def open_output(path: str | Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # `export_trees out/trees.jsonl.gz` on a fresh checkout
    if path.suffix == ".gz":
        return gzip.open(path, "wt", compresslevel=GZIP_LEVEL, encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path_for(path: str | Path) -> Path:
    return Path(f"{path}.manifest.json")


def export_to_file(*, path: str | Path, filters: ExportFilters, fmt: str = "trees",
                   anonymize_seed: str | None = None, seed_source: str = "option",
                   progress: Callable[[int], None] | None = None, chunk_size: int = TREE_CHUNK_SIZE) -> ExportResult:
    """Write the export and its manifest (counts, filters, time, sha256 of the file, and whether and
    with which kind of seed the ids were anonymised; never the seed)."""
    path = Path(path)
    started = timezone.now()
    result = ExportResult(path=str(path), format=fmt)
    tree_ids: set = set()
    with open_output(path) as out:
        for record, message_count in export_records(filters=filters, fmt=fmt, anonymize_seed=anonymize_seed,
                                                    chunk_size=chunk_size):
            out.write(json.dumps(record, ensure_ascii=False))
            out.write("\n")
            result.messages += message_count
            if fmt == "trees":
                result.trees += 1
            else:
                tree_ids.add(record["message_tree_id"])
            if progress:
                progress(message_count)
    if fmt == "messages":
        result.trees = len(tree_ids)
    result.sha256 = _sha256(path)
    result.filters = {key: (value.isoformat() if isinstance(value, datetime) else
                            list(value) if isinstance(value, tuple) else value)
                      for key, value in asdict(filters).items()}
    manifest = {
        "file": path.name,
        "format": fmt,
        "compressed": path.suffix == ".gz",
        "trees": result.trees,
        "messages": result.messages,
        "filters": result.filters,
        "anonymized": anonymize_seed is not None,
        **({"anonymize_seed_source": seed_source} if anonymize_seed is not None else {}),
        "started_at": started.isoformat(),
        "finished_at": timezone.now().isoformat(),
        "sha256": result.sha256,
    }
    manifest_path = manifest_path_for(path)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    result.manifest_path = str(manifest_path)
    return result
