"""The oasst import: tree files, nested or flat message files, Hugging Face flat rows, and Hugging Face
release folders (tasks.export_hf: their Parquet rows are read as flat rows).

The kind of each line is detected on its own; gzip is detected from the file's first bytes. New
trees are written in batches of many trees per transaction (tree by tree when a batch fails), their
counters computed as `tree_counters_recompute` would write them. A tree the database holds already
is merged: it gains the file's messages it lacks, each in one transaction; differing fields of its
messages are reported (see `tasks.import_plan` and `tasks.import_write`).
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from queue import Full, Queue

from tasks.export_hf import hf_lines
from tasks.import_plan import FieldChange, TreeOutcome, TreeRefused, merge_plan
from tasks.import_write import IN_CHUNK, existing_messages, tree_merge, trees_create
from tasks.models import MessageTree, Role, TreeState

BATCH_MESSAGES = 5000  # messages of new trees written in one transaction
# Longest values the columns hold (PostgreSQL refuses longer ones; checked before a batch is written).
MAX_LENGTHS = {"lang": 16, "model_name": 256, "origin": 32}
MAX_COUNTS = {"rank": 32767, "review_count": 2**31 - 1}
ROLES, TREE_STATES = frozenset(Role.values), frozenset(TreeState.values)


class ImportLineError(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class ImportReport:
    trees_created: int = 0
    messages_created: int = 0  # in new trees and added to existing ones
    users_created: int = 0
    trees_merged: dict[str, list[str]] = field(default_factory=dict)  # existing tree -> ids of the messages added
    trees_skipped: list[str] = field(default_factory=list)  # existing trees identical to the file's
    trees_changed: list[str] = field(default_factory=list)  # existing trees, nothing added, fields differ
    changes: list[FieldChange] = field(default_factory=list)  # differing fields (applied with update_changed)
    orphans: list[str] = field(default_factory=list)
    trees_refused: dict[str, str] = field(default_factory=dict)  # tree -> why nothing of it was written
    errors: list[str] = field(default_factory=list)  # malformed lines

    @property
    def messages_added(self) -> int:
        return sum(len(added) for added in self.trees_merged.values())

    def record(self, outcome: TreeOutcome) -> None:
        self.messages_created += len(outcome.added)
        self.changes.extend(outcome.changes)
        self.orphans.extend(outcome.orphans)
        if outcome.status == "created":
            self.trees_created += 1
        elif outcome.status == "merged":
            self.trees_merged[outcome.tree_id] = outcome.added
        elif outcome.status == "identical":
            self.trees_skipped.append(outcome.tree_id)
        elif outcome.status == "changed":
            self.trees_changed.append(outcome.tree_id)
        else:
            self.trees_refused[outcome.tree_id] = outcome.error


def _open(path: str | Path):
    if Path(path).is_dir():  # a release folder: its rows, one JSON line each (numbered across its files)
        return closing(hf_lines(path))
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if compressed else open(path, encoding="utf-8")


def _column_wise(value, *, with_value: bool) -> dict:
    """HF rows store emojis and labels as {"name": [...], "count": [...] (, "value": [...])}."""
    if not value:
        return {}
    if isinstance(value, dict) and isinstance(value.get("name"), list):
        names, counts = value["name"], value.get("count") or [None] * len(value["name"])
        if with_value:
            values = value.get("value") or [None] * len(names)
            return {n: {"value": v, "count": c} for n, v, c in zip(names, values, counts, strict=True)}
        return {n: c for n, c in zip(names, counts, strict=True)}
    if isinstance(value, dict):
        return value
    raise ValueError("emojis and labels must be objects")


def _flat(node: dict, *, tree_id: str | None, tree_state: str | None, origin: str | None = None) -> Iterator[dict]:
    """A nested node and its replies as flat rows."""
    stack = [(node, node.get("parent_id"))]
    while stack:
        current, parent_id = stack.pop()
        row = {key: value for key, value in current.items() if key != "replies"}
        row["parent_id"] = parent_id
        row.setdefault("message_tree_id", tree_id)
        row.setdefault("tree_state", tree_state)
        if origin:
            row["origin"] = origin
        yield row
        for reply in current.get("replies") or ():
            if not isinstance(reply, dict):
                raise ValueError("replies must be objects")
            stack.append((reply, current["message_id"]))


def rows_of_line(record: object) -> list[dict]:
    """The message rows of one parsed line, whatever its kind."""
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    if "prompt" in record:  # a tree
        if not isinstance(record["prompt"], dict) or "message_tree_id" not in record:
            raise ValueError("a tree needs message_tree_id and a prompt object")
        return list(_flat(record["prompt"], tree_id=record["message_tree_id"], tree_state=record.get("tree_state"),
                          origin=record.get("origin")))
    if "message_id" in record:  # a nested or flat message, or a Hugging Face row
        tree_id = record.get("message_tree_id") or (record["message_id"] if not record.get("parent_id") else None)
        if tree_id is None:
            raise ValueError("a reply row needs message_tree_id")
        return list(_flat(record, tree_id=tree_id, tree_state=record.get("tree_state")))
    raise ValueError("neither a tree (prompt) nor a message (message_id)")


def _check_row(row: dict) -> dict:
    for key in ("message_id", "text", "role"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise ValueError(f"message field {key!r} is missing or not a string")
    for key in ("message_id", "parent_id", "message_tree_id"):
        if row.get(key) is not None:
            row[key] = str(uuid.UUID(str(row[key])))
    for key, limit in MAX_LENGTHS.items():
        if row.get(key) is not None and (not isinstance(row[key], str) or len(row[key]) > limit):
            raise ValueError(f"{key} must be a string of at most {limit} characters")
    for key in ("review_result", "deleted", "synthetic"):
        if row.get(key) is not None and not isinstance(row[key], bool):
            raise ValueError(f"{key} must be true, false or null")
    if row["role"] not in ROLES:
        raise ValueError(f"unknown role {row['role']!r}")
    if row.get("tree_state") and row["tree_state"] not in TREE_STATES:
        raise ValueError(f"unknown tree state {row['tree_state']!r}")
    for key in ("rank", "review_count"):  # Hugging Face rows store these as floats (NaN-able columns)
        value = row.get(key)
        if isinstance(value, float) and value.is_integer():
            row[key] = int(value)
        elif isinstance(value, float) and value != value:
            row[key] = None
        if row.get(key) is not None and (isinstance(row[key], bool) or not isinstance(row[key], int)
                                         or not 0 <= row[key] <= MAX_COUNTS[key]):
            raise ValueError(f"{key} must be an integer from 0 to {MAX_COUNTS[key]}")
    for key, with_value in (("emojis", False), ("labels", True)):
        if key in row:  # left out, it is not compared with the database's value
            row[key] = _column_wise(row[key], with_value=with_value)
    if any(isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < 2**31
           for count in (row.get("emojis") or {}).values()):
        raise ValueError("emoji counts must be non-negative integers")
    return row


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    return isinstance(value, list) and any(_has_nul(item) for item in value)


def read_rows(path: str | Path, report: ImportReport, *, stop_on_error: bool) -> Iterator[tuple[str, list[dict]]]:
    """(tree id, rows) per tree line as it comes; rows of flat files are gathered until the end."""
    flat: dict[str, list[dict]] = {}
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if "\\u0000" in line and _has_nul(record):  # PostgreSQL stores no NUL character
                    raise ValueError("a message may not contain NUL characters")
                rows = [_check_row(row) for row in rows_of_line(record)]
            except (ValueError, KeyError, TypeError) as error:
                report.errors.append(f"line {number}: {error}")
                if stop_on_error:
                    raise ImportLineError(number, str(error)) from error
                continue
            if isinstance(record, dict) and "prompt" in record:
                yield str(record["message_tree_id"]), rows
            else:
                for row in rows:
                    flat.setdefault(str(row["message_tree_id"]), []).append(row)
    yield from flat.items()


def _batch_import(batch: list[tuple[str, list[dict]]], *, state: str | None,
                  update_changed: bool) -> tuple[list[TreeOutcome], int]:
    """Outcomes of a batch of the file's trees (no tree or message id twice in it), in file order, and
    the users created: new trees in one go, trees the database holds merged one by one."""
    tree_ids = [tree_id for tree_id, _ in batch]
    in_db = {str(pk) for start in range(0, len(tree_ids), IN_CHUNK)
             for pk in MessageTree.objects.filter(pk__in=tree_ids[start:start + IN_CHUNK]).values_list("pk", flat=True)}
    existing = existing_messages(in_db, [row["message_id"] for _, rows in batch for row in rows])
    fresh = [(tree_id, rows) for tree_id, rows in batch
             if tree_id not in in_db and not any(row["message_id"] in existing for row in rows)]
    outcomes, users_created = trees_create(fresh, state=state)
    by_tree = {outcome.tree_id: outcome for outcome in outcomes}
    in_trees: dict[str, dict] = {}
    for message_id, values in existing.items():
        in_trees.setdefault(values["tree_id"], {})[message_id] = values
    for tree_id, rows in batch:
        if tree_id in by_tree:
            continue
        known = {**in_trees.get(tree_id, {}),
                 **{row["message_id"]: existing[row["message_id"]] for row in rows if row["message_id"] in existing}}
        try:
            plan = merge_plan(tree_id, rows, known)
            if plan.new_rows or (plan.changes and update_changed):
                by_tree[tree_id], created = tree_merge(tree_id, rows, update_changed=update_changed)
                users_created += created
            else:
                by_tree[tree_id] = TreeOutcome(tree_id=tree_id, status="changed" if plan.changes else "identical",
                                               changes=plan.changes)
        except TreeRefused as error:
            by_tree[tree_id] = TreeOutcome(tree_id=tree_id, status="refused", error=str(error))
    return [by_tree[tree_id] for tree_id in tree_ids], users_created


def _batches(trees: Iterator[tuple[str, list[dict]]]) -> Iterator[list[tuple[str, list[dict]]]]:
    """The file's trees in batches of about BATCH_MESSAGES messages; a tree that shares a tree or
    message id with the batch so far starts the next one (it then merges into what the batch wrote)."""
    batch, ids, size = [], set(), 0
    try:
        for tree_id, rows in trees:
            row_ids = {row["message_id"] for row in rows}
            if batch and (tree_id in ids or not row_ids.isdisjoint(ids) or size >= BATCH_MESSAGES):
                yield batch
                batch, ids, size = [], set(), 0
            batch.append((tree_id, rows))
            ids |= row_ids | {tree_id}
            size += len(rows)
    except ImportLineError:  # --stop-on-error: the trees before the malformed line are imported
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def _read_ahead(batches: Iterator[list], *, depth: int = 2) -> Iterator[list]:
    """The batches, read and checked in a thread: the file is parsed while the caller waits on the
    database. An error of the reader is raised here, after the batches read before it."""
    queue: Queue = Queue(maxsize=depth)
    stop, done = threading.Event(), object()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not hand_over(batch):
                    return
            hand_over(done)
        except BaseException as error:  # noqa: BLE001 (raised again in the caller's thread)
            hand_over(error)
        finally:
            batches.close()

    reader = threading.Thread(target=read, name="import-reader", daemon=True)
    reader.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def import_file(*, path: str | Path, backlog_ranking: bool = False, stop_on_error: bool = False,
                update_changed: bool = False, progress: Callable[[int], None] | None = None,
                on_tree: Callable[[TreeOutcome], None] | None = None) -> ImportReport:
    """Import every tree of the file: new trees are created, trees the database holds gain the
    messages they lack, and fields of existing messages that differ are reported (taken from the file
    with `update_changed`). `on_tree` receives each tree's outcome."""
    report = ImportReport()
    state = TreeState.BACKLOG_RANKING if backlog_ranking else None
    for batch in _read_ahead(_batches(read_rows(path, report, stop_on_error=stop_on_error))):
        outcomes, users_created = _batch_import(batch, state=state, update_changed=update_changed)
        report.users_created += users_created
        for outcome in outcomes:
            report.record(outcome)
            if on_tree:
                on_tree(outcome)
        if progress:
            progress(len(batch))
    return report
