"""The oasst export: trees or flat messages as JSON Lines (gzip for `.gz`), streamed, with a manifest.

Two writers give the same records: on PostgreSQL, tasks.export_pg (one streamed query whose rows
are JSON already); elsewhere, the Python path here, which reads trees in chunks and each chunk's
messages in one query. Memory stays flat whatever the size of the database.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path

from django.db import connection
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from tasks.export_pg import export_lines_pg
from tasks.export_query import (
    FORMATS,
    ExportFilters,
    anonymize_node,
    anonymizer,
    events_by_message,
    kept_ids,
    trees_for_export,
)
from tasks.models import Message
from tasks.oasst_format import message_node, tree_node

__all__ = ["FORMATS", "ExportFilters", "anonymizer", "trees_for_export"]  # their home is tasks.export_query

EXPORT_PERMISSION = "tasks.export_trees"
ENGINES = ("auto", "python", "postgresql")  # auto: postgresql on PostgreSQL, else python
TREE_CHUNK_SIZE = 500
WRITE_BATCH = 1000  # lines joined into one write
# gzip's default: on the PostgreSQL engine it costs 3.6 s of CPU per 1M messages (level 1: 0.7 s) for a
# 17% smaller file, and Python's 9 was 15% slower for 8% less (bench/export.py, bench/README.md).
GZIP_LEVEL = 6


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


def export_lines(*, filters: ExportFilters, fmt: str = "trees", anonymize_seed: str | None = None,
                 engine: str = "auto") -> Iterator[str]:
    """The export as JSON lines, for a streamed HTTP response."""
    for line, _, _ in counted_lines(filters=filters, fmt=fmt, anonymize_seed=anonymize_seed, engine=engine):
        yield line


def counted_lines(*, filters: ExportFilters, fmt: str = "trees", anonymize_seed: str | None = None,
                  engine: str = "auto", chunk_size: int = TREE_CHUNK_SIZE) -> Iterator[tuple[str, int, object]]:
    """Yields (JSON line, message count, tree) per tree (trees format) or per message (messages
    format), a tree's lines one after the other, from the engine asked for."""
    if engine not in ENGINES:
        raise ValueError(f"Unknown export engine {engine!r}; use one of {', '.join(ENGINES)}.")
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    on_postgresql = connection.vendor == "postgresql"
    if engine == "postgresql" and not on_postgresql:
        raise ValueError(f"The postgresql export engine needs PostgreSQL; this database is {connection.vendor}.")
    if engine == "postgresql" or (engine == "auto" and on_postgresql):
        yield from export_lines_pg(filters=filters, fmt=fmt, anonymize_seed=anonymize_seed)
        return
    for record, message_count in export_records(filters=filters, fmt=fmt, anonymize_seed=anonymize_seed,
                                                chunk_size=chunk_size):
        yield json.dumps(record, ensure_ascii=False) + "\n", message_count, record["message_tree_id"]


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

    kept = kept_ids((m.pk, m.parent_id, excluded(m)) for m in messages)
    return messages if kept is None else [m for m in messages if m.pk in kept]


def _chunks(iterable: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decorate(node: dict, filters: ExportFilters, events: dict) -> dict:
    """Drop or add the optional parts of a node (and its replies) as the export asks."""
    if not filters.labels:
        node.pop("labels", None)
    if filters.events:
        found = events.get(node["message_id"])
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
        events = events_by_message([m.pk for m in rows]) if filters.events else {}
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
                    anonymize_node(record["prompt"], anonymize)
                yield record, len(kept)
            else:
                for message in kept:
                    if filters.user_id is not None and message.author_id != filters.user_id:
                        continue
                    node = _decorate(message_node(message, tree=tree, flat=True), filters, events)
                    yield (anonymize_node(node, anonymize) if anonymize else node), 1


def open_output(path: str | Path, gzip_level: int = GZIP_LEVEL):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # `export_trees out/trees.jsonl.gz` on a fresh checkout
    if path.suffix == ".gz":
        # mtime=0: the same data gives the same file, and the manifest's checksum depends on the data only
        return io.TextIOWrapper(gzip.GzipFile(path, "wb", compresslevel=gzip_level, mtime=0), encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path_for(path: str | Path) -> Path:
    return Path(f"{path}.manifest.json")


def export_to_file(*, path: str | Path, filters: ExportFilters, fmt: str = "trees",
                   anonymize_seed: str | None = None, seed_source: str = "option",
                   progress: Callable[[int], None] | None = None, chunk_size: int = TREE_CHUNK_SIZE,
                   engine: str = "auto", gzip_level: int = GZIP_LEVEL) -> ExportResult:
    """Write the export and its manifest (counts, filters, time, sha256 of the file, and whether and
    with which kind of seed the ids were anonymised; never the seed). Lines are written in batches,
    and progress told per batch."""
    if not 1 <= gzip_level <= 9:
        raise ValueError(f"gzip levels run from 1 to 9, not {gzip_level}.")
    path = Path(path)
    started = timezone.now()
    result = ExportResult(path=str(path), format=fmt)
    lines = counted_lines(filters=filters, fmt=fmt, anonymize_seed=anonymize_seed, engine=engine,
                          chunk_size=chunk_size)  # checks the engine and the format before a file is opened
    first = next(lines, None)
    pending: list[str] = []
    pending_messages = 0
    last_tree = None
    with open_output(path, gzip_level=gzip_level) as out:
        for line, message_count, tree in (lines if first is None else chain([first], lines)):
            pending.append(line)
            pending_messages += message_count
            if tree != last_tree:  # a tree's lines come one after the other
                result.trees += 1
                last_tree = tree
            if len(pending) >= WRITE_BATCH:
                out.write("".join(pending))
                result.messages += pending_messages
                if progress:
                    progress(pending_messages)
                pending, pending_messages = [], 0
        out.write("".join(pending))
        result.messages += pending_messages
        if progress and pending_messages:
            progress(pending_messages)
    result.sha256 = file_sha256(path)
    result.filters = filters_json(filters)
    manifest = export_manifest(file=path.name, fmt=fmt, trees=result.trees, messages=result.messages,
                               filters=filters, anonymize_seed=anonymize_seed, seed_source=seed_source,
                               started=started, sha256=result.sha256, compressed=path.suffix == ".gz")
    manifest_path = manifest_path_for(path)
    write_manifest(manifest_path, manifest)
    result.manifest_path = str(manifest_path)
    return result


def filters_json(filters: ExportFilters) -> dict:
    return {key: (value.isoformat() if isinstance(value, datetime) else
                  list(value) if isinstance(value, tuple) else value)
            for key, value in asdict(filters).items()}


def export_manifest(*, file: str, fmt: str, trees: int, messages: int, filters: ExportFilters,
                    anonymize_seed: str | None, seed_source: str, started: datetime, sha256: str,
                    **extra) -> dict:
    """What an export's manifest says: counts, filters, times, checksum, and whether and with which
    kind of seed the ids were anonymised (never the seed); `extra` goes before the checksum."""
    return {
        "file": file,
        "format": fmt,
        **{key: value for key, value in extra.items() if key == "compressed"},
        "trees": trees,
        "messages": messages,
        "filters": filters_json(filters),
        "anonymized": anonymize_seed is not None,
        **({"anonymize_seed_source": seed_source} if anonymize_seed is not None else {}),
        "started_at": started.isoformat(),
        "finished_at": timezone.now().isoformat(),
        **{key: value for key, value in extra.items() if key != "compressed"},
        "sha256": sha256,
    }


def write_manifest(path: Path, manifest: dict) -> None:
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
