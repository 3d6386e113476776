"""What an import does with one tree, as plain data: the model values of a file's message, the order
in which a new tree's rows are written, and the merge of a file's tree into the one the database
holds (the messages to add, parents first, and the fields that differ). No database access.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

# File field -> Message field, for the fields an import writes and compares.
CARRIED_FIELDS = {"text": "text", "role": "role", "lang": "lang", "review_count": "review_count",
                  "review_result": "review_result", "rank": "rank", "deleted": "deleted", "synthetic": "synthetic",
                  "model_name": "model_name", "emojis": "emojis", "labels": "labels", "created_date": "created_at"}
# A field a file leaves empty (null) means the model's empty value.
EMPTY_VALUES = {"review_count": 0, "deleted": False, "synthetic": False, "model_name": "", "emojis": {}, "labels": {}}


class TreeRefused(ValueError):
    """A file's tree that cannot be imported or merged as it is; nothing of it is written."""


@dataclass
class FieldChange:
    """A field of a message in the database whose value in the file differs."""

    tree_id: str
    message_id: str
    field: str
    db: object
    file: object
    applied: bool = False


@dataclass
class TreeOutcome:
    """What one tree of the file did: created, merged (messages added), identical, changed
    (nothing added, fields differ) or refused."""

    tree_id: str
    status: str
    added: list[str] = field(default_factory=list)
    changes: list[FieldChange] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    error: str = ""

    def as_json(self) -> dict:
        record = {"tree_id": self.tree_id, "status": self.status, "added": self.added,
                  "changes": [vars(change) for change in self.changes]}
        if self.orphans:
            record["orphans"] = self.orphans
        if self.error:
            record["error"] = self.error
        return record


def file_moment(value) -> datetime | None:
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def carried_values(row: dict) -> dict:
    """The Message values a checked row carries; a field the row leaves out is not carried (exports
    omit empty fields, and labels unless asked), null means the field's empty value."""
    values = {}
    for key, name in CARRIED_FIELDS.items():
        if key not in row:
            continue
        value = row[key]
        if key == "created_date":
            if (moment := file_moment(value)) is not None:
                values[name] = moment
        elif key == "lang":
            if value:
                values[name] = value
        else:
            values[name] = EMPTY_VALUES.get(key) if value is None and key in EMPTY_VALUES else value
    return values


def new_message_values(row: dict, *, tree_lang: str) -> dict:
    """Every value of a new message from a checked row (created_at only when the file has a date)."""
    values = {"lang": tree_lang, "review_result": None, "rank": None, **EMPTY_VALUES}
    values.update(carried_values(row))
    values["red_flags"] = values["emojis"].get("red_flag", 0) or 0
    return values


def _as_json(value):
    return value.isoformat() if isinstance(value, datetime) else value


def field_changes(tree_id: str, message_id: str, db_values: dict, row: dict) -> list[FieldChange]:
    """The carried fields of a file's row that differ from the message in the database."""
    file_names = {name: key for key, name in CARRIED_FIELDS.items()}
    return [FieldChange(tree_id=tree_id, message_id=message_id, field=file_names[name], db=_as_json(db_values[name]),
                        file=_as_json(value))
            for name, value in carried_values(row).items() if db_values[name] != value]


def _check_unique(rows: list[dict]) -> None:
    seen = set()
    for row in rows:
        if row["message_id"] in seen:
            raise TreeRefused(f"message {row['message_id']} appears twice")
        seen.add(row["message_id"])


def new_tree_rows(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """The rows connected to the root, parents first with their depth, and the ids of the rows that
    are not (orphans: reported and left out of a new tree)."""
    _check_unique(rows)
    roots = sum(1 for row in rows if not row.get("parent_id"))
    if roots != 1:
        raise TreeRefused(f"the tree has {roots} prompts (messages without parent) instead of one")
    ordered = _parents_first(rows, {None: -1})
    reached = {row["message_id"] for row in ordered}
    return ordered, [row["message_id"] for row in rows if row["message_id"] not in reached]


def _parents_first(rows: list[dict], known_depth: dict) -> list[dict]:
    """The rows reachable from a known message (id -> depth), parents first, each with its depth."""
    by_parent: dict = {}
    for row in rows:
        by_parent.setdefault(row.get("parent_id") or None, []).append(row)
    # the children of known messages in the file's order (not the known messages' order, which a query gives)
    ordered, frontier = [], deque((row, known_depth[row.get("parent_id") or None] + 1) for row in rows
                                  if (row.get("parent_id") or None) in known_depth)
    for known in known_depth:
        by_parent.pop(known, None)
    while frontier:  # breadth first, in the file's order
        row, depth = frontier.popleft()
        row["depth"] = depth
        ordered.append(row)
        frontier.extend((child, depth + 1) for child in by_parent.pop(row["message_id"], ()))
    return ordered


@dataclass
class MergePlan:
    new_rows: list[dict]  # parents first, with their depth
    changes: list[FieldChange]


def merge_plan(tree_id: str, rows: list[dict], existing: dict[str, dict]) -> MergePlan:
    """Merge a file's tree into the database's: `existing` maps the id of every message of the tree,
    and of any other message of the file in the database, to its values (tree_id, parent_id, depth
    and the carried fields, ids as strings). Raises TreeRefused when the file contradicts the database
    or a new message cannot be attached."""
    _check_unique(rows)
    new_rows, changes = [], []
    for row in rows:
        message_id = row["message_id"]
        db_values = existing.get(message_id)
        if db_values is None:
            new_rows.append(row)
            continue
        if db_values["tree_id"] != tree_id:
            raise TreeRefused(f"message {message_id} belongs to tree {db_values['tree_id']} in the database")
        if (row.get("parent_id") or None) != db_values["parent_id"]:
            raise TreeRefused(f"message {message_id} has parent {db_values['parent_id']} in the database "
                              f"and {row.get('parent_id')} in the file")
        changes.extend(field_changes(tree_id, message_id, db_values, row))
    in_tree = {message_id: values["depth"] for message_id, values in existing.items() if values["tree_id"] == tree_id}
    if sum(1 for row in new_rows if not row.get("parent_id")) > (0 if in_tree else 1):
        raise TreeRefused("the file has a second prompt (a message without parent) for the tree")
    ordered = _parents_first(new_rows, in_tree or {None: -1})
    if len(ordered) != len(new_rows):
        reached = {row["message_id"] for row in ordered}
        lost = next(row for row in new_rows if row["message_id"] not in reached)
        raise TreeRefused(f"message {lost['message_id']}: its parent {lost.get('parent_id')} is neither in the "
                          f"database nor in the file")
    return MergePlan(new_rows=ordered, changes=changes)
