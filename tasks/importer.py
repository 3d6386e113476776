"""The oasst import: tree files, nested or flat message files and Hugging Face flat rows.

The kind of each line is detected on its own; gzip is detected from the file's first bytes.
Each tree is written in one transaction, its counters computed as `tree_counters_recompute` would
write them; trees whose id exists already are skipped.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.dateparse import parse_datetime

from tasks.models import Message, MessageTree, Role, TreeState
from tasks.tree_manager import tree_config

PLACEHOLDER_PREFIX = "imported-"


class ImportLineError(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class ImportReport:
    trees_created: int = 0
    messages_created: int = 0
    users_created: int = 0
    trees_skipped: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _open(path: str | Path):
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
    if row["role"] not in Role.values:
        raise ValueError(f"unknown role {row['role']!r}")
    if row.get("tree_state") and row["tree_state"] not in TreeState.values:
        raise ValueError(f"unknown tree state {row['tree_state']!r}")
    for key in ("rank", "review_count"):  # Hugging Face rows store these as floats (NaN-able columns)
        value = row.get(key)
        if isinstance(value, float) and value.is_integer():
            row[key] = int(value)
        elif isinstance(value, float) and value != value:
            row[key] = None
        if row.get(key) is not None and (isinstance(row[key], bool) or not isinstance(row[key], int) or row[key] < 0):
            raise ValueError(f"{key} must be a non-negative integer")
    row["emojis"] = _column_wise(row.get("emojis"), with_value=False)
    row["labels"] = _column_wise(row.get("labels"), with_value=True)
    return row


def read_rows(path: str | Path, report: ImportReport, *, stop_on_error: bool) -> Iterator[tuple[str, list[dict]]]:
    """(tree id, rows) per tree line as it comes; rows of flat files are gathered until the end."""
    flat: dict[str, list[dict]] = {}
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
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


def _placeholder_users(user_ids: set[str], report: ImportReport) -> dict[str, object]:
    User = get_user_model()
    users = {}
    for user_id in user_ids:  # ids in a file are another system's: never matched to local accounts
        username = f"{PLACEHOLDER_PREFIX}{user_id}"[:150]
        user, created = User.objects.get_or_create(username=username, defaults={"is_active": False})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            report.users_created += 1
        users[user_id] = user
    return users


def _tree_rows(rows: list[dict], report: ImportReport) -> list[dict]:
    """The rows connected to the root, parents first; orphans are reported and left out."""
    by_parent: dict = {}
    roots = []
    for row in rows:
        if not row.get("parent_id"):
            roots.append(row)
        else:
            by_parent.setdefault(row["parent_id"], []).append(row)
    if len(roots) != 1:
        report.orphans.extend(row["message_id"] for row in rows)
        return []
    ordered, frontier = [], [(roots[0], 0)]
    while frontier:
        row, depth = frontier.pop()
        row["depth"] = depth
        ordered.append(row)
        frontier.extend((child, depth + 1) for child in by_parent.pop(row["message_id"], ()))
    reached = {row["message_id"] for row in ordered}
    report.orphans.extend(row["message_id"] for row in rows if row["message_id"] not in reached)
    return ordered


@transaction.atomic
def _write_tree(tree_id: str, rows: list[dict], *, state: str | None, report: ImportReport) -> None:
    ordered = _tree_rows(rows, report)
    if not ordered:
        return
    root = ordered[0]
    config = tree_config()
    # The counters tree_counters_recompute would write; a new tree has no open tasks.
    live = [row for row in ordered if not row.get("deleted") and row.get("review_result") is not False]
    live_children = Counter(row.get("parent_id") for row in live)
    tree = MessageTree.objects.create(
        id=tree_id, state=state or root.get("tree_state") or TreeState.READY_FOR_EXPORT, lang=root.get("lang") or "en",
        origin=root.get("origin") or "import", goal_tree_size=config.goal_tree_size,
        max_depth=config.max_tree_depth, max_children_count=config.max_children_count, message_count=len(live),
        accepted_count=sum(1 for row in live if row.get("review_result") is True),
        awaiting_review=sum(1 for row in live if row.get("review_result") is None),
    )
    users = _placeholder_users({str(row["user_id"]) for row in ordered if row.get("user_id")}, report)
    messages = [
        Message(id=row["message_id"], tree=tree, parent_id=row.get("parent_id") or None,
                author=users.get(str(row["user_id"])) if row.get("user_id") else None, role=row["role"],
                text=row["text"], lang=row.get("lang") or tree.lang, depth=row["depth"],
                review_count=row.get("review_count") or 0, review_result=row.get("review_result"),
                rank=row.get("rank"), deleted=bool(row.get("deleted")), synthetic=bool(row.get("synthetic")),
                model_name=row.get("model_name") or "", emojis=row["emojis"], labels=row["labels"],
                red_flags=row["emojis"].get("red_flag", 0) or 0, children_count=live_children[row["message_id"]])
        for row in ordered
    ]
    Message.objects.bulk_create(messages, batch_size=500)
    dated = []
    for message, row in zip(messages, ordered, strict=True):
        moment = parse_datetime(row["created_date"]) if isinstance(row.get("created_date"), str) else None
        if moment:
            message.created_at = moment
            dated.append(message)
    if dated:  # created_at is auto_now_add: the file's dates are written after the insert
        Message.objects.bulk_update(dated, ["created_at"], batch_size=500)
    report.trees_created += 1
    report.messages_created += len(messages)


def import_file(*, path: str | Path, backlog_ranking: bool = False, stop_on_error: bool = False,
                progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import every tree of the file; existing tree ids are skipped and reported."""
    report = ImportReport()
    state = TreeState.BACKLOG_RANKING if backlog_ranking else None
    for tree_id, rows in read_rows(path, report, stop_on_error=stop_on_error):
        if MessageTree.objects.filter(pk=tree_id).exists() or \
                Message.objects.filter(pk__in=[row["message_id"] for row in rows]).exists():
            report.trees_skipped.append(tree_id)
        else:
            _write_tree(tree_id, rows, state=state, report=report)
        if progress:
            progress(1)
    return report
