"""The writes of an import: new trees in batches (many trees in one transaction, tree by tree when a
batch fails) and the merge of a file's tree into one the database holds (one transaction under the
tree lock). Which rows to write comes from `tasks.import_plan`.
"""

from __future__ import annotations

import json
from collections import Counter

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from tasks import services
from tasks.import_plan import (
    CARRIED_FIELDS,
    TreeOutcome,
    TreeRefused,
    carried_values,
    merge_plan,
    new_message_values,
    new_tree_rows,
)
from tasks.models import Message, MessageRevision, MessageTree, TreeState
from tasks.tree_manager import tree_config
from tasks.tree_state import tree_locked

PLACEHOLDER_PREFIX = "imported-"
IN_CHUNK = 2000  # ids per IN (...) list: below SQLite's limit on query parameters


def placeholder_users(user_ids: set[str]) -> tuple[dict[str, object], int]:
    """The placeholder account of each user id of a file (created inactive, without a usable password);
    ids in a file are another system's: never matched to local accounts. Returns (users, how many new)."""
    User = get_user_model()
    names = {user_id: f"{PLACEHOLDER_PREFIX}{user_id}"[:150] for user_id in user_ids}
    wanted = sorted(set(names.values()))
    found = {}
    for start in range(0, len(wanted), IN_CHUNK):
        found.update((user.username, user) for user in User.objects.filter(username__in=wanted[start:start + IN_CHUNK]))
    missing = [User(username=name, is_active=False, password=make_password(None))
               for name in wanted if name not in found]
    if missing:
        User.objects.bulk_create(missing)
        found.update((user.username, user) for user in User.objects.filter(username__in=[u.username for u in missing]))
    return {user_id: found[name] for user_id, name in names.items()}, len(missing)


def rows_insert(model, rows: list[dict]) -> None:
    """INSERT rows (attname -> value; the fields' defaults for the rest) with the values given, where
    bulk_create would stamp auto_now_add fields with the time of the import: COPY on PostgreSQL (its
    text format parses each value as its column's type), one executemany with Django's conversions
    elsewhere."""
    fields = model._meta.concrete_fields
    defaults = [(field.attname, field.get_default()) for field in fields]
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            as_json = [index for index, field in enumerate(fields) if field.get_internal_type() == "JSONField"]
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    values = [row.get(name, default) for name, default in defaults]
                    for index in as_json:
                        values[index] = "{}" if values[index] == {} else json.dumps(values[index])
                    copy.write_row(values)
        else:
            placeholders = ", ".join(["%s"] * len(fields))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",  # noqa: S608 (model's names)
                               [[field.get_db_prep_save(row.get(name, default), connection)
                                 for field, (name, default) in zip(fields, defaults, strict=True)] for row in rows])


def existing_messages(tree_ids, message_ids: list[str]) -> dict[str, dict]:
    """id -> values (tree_id, parent_id, depth and the carried fields, ids as strings) of the messages of
    the trees and of the listed messages."""
    columns = ["id", "tree_id", "parent_id", "depth", *CARRIED_FIELDS.values()]
    found: dict[str, dict] = {}

    def load(name: str, ids: list) -> None:
        for start in range(0, len(ids), IN_CHUNK):
            for values in Message.objects.filter(**{f"{name}__in": ids[start:start + IN_CHUNK]}).values(*columns):
                for key in ("id", "tree_id", "parent_id"):
                    values[key] = str(values[key]) if values[key] else None
                found[values["id"]] = values

    load("tree_id", list(tree_ids))
    load("pk", [message_id for message_id in message_ids if message_id not in found])
    return found


def _new_messages(rows: list[dict], *, tree_id: str, tree_lang: str, users: dict, now) -> list[dict]:
    """The Message rows (attname -> value) of a tree's new rows, parents first."""
    live_children = Counter(row.get("parent_id") for row in rows
                            if not row.get("deleted") and row.get("review_result") is not False)
    messages = []
    for row in rows:
        values = new_message_values(row, tree_lang=tree_lang)
        values.setdefault("created_at", now)
        author = users.get(str(row["user_id"])) if row.get("user_id") else None
        messages.append({"id": row["message_id"], "tree_id": tree_id, "parent_id": row.get("parent_id") or None,
                         "author_id": author.pk if author else None, "depth": row["depth"],
                         "children_count": live_children[row["message_id"]], **values})
    return messages


def _trees_write(plans: list[tuple[str, list[dict]]], *, state: str | None) -> int:
    """Insert new trees (rows parents first) and their messages; the tree counters are what
    `tree_counters_recompute` would write (a new tree has no open tasks). Returns the users created."""
    if not plans:
        return 0
    users, users_created = placeholder_users({str(row["user_id"]) for _, rows in plans for row in rows
                                              if row.get("user_id")})
    config, now = tree_config(), timezone.now()
    trees, messages = [], []
    for tree_id, rows in plans:
        root = rows[0]
        lang = root.get("lang") or "en"
        live = [row for row in rows if not row.get("deleted") and row.get("review_result") is not False]
        trees.append({
            "id": tree_id, "state": state or root.get("tree_state") or TreeState.READY_FOR_EXPORT, "lang": lang,
            "origin": root.get("origin") or "import", "goal_tree_size": config.goal_tree_size,
            "max_depth": config.max_tree_depth, "max_children_count": config.max_children_count,
            "message_count": len(live), "accepted_count": sum(1 for row in live if row.get("review_result") is True),
            "awaiting_review": sum(1 for row in live if row.get("review_result") is None),
            "created_at": now, "updated_at": now})
        messages.extend(_new_messages(rows, tree_id=tree_id, tree_lang=lang, users=users, now=now))
    rows_insert(MessageTree, trees)
    rows_insert(Message, messages)
    return users_created


def trees_create(trees: list[tuple[str, list[dict]]], *, state: str | None) -> tuple[list[TreeOutcome], int]:
    """Create the new trees of a batch in one transaction; when it fails, tree by tree, so that a bad
    tree is refused and the others land. Returns the outcomes and the users created."""
    outcomes, plans = [], []
    for tree_id, rows in trees:
        try:
            ordered, orphans = new_tree_rows(rows)
        except TreeRefused as error:
            outcomes.append(TreeOutcome(tree_id=tree_id, status="refused", error=str(error)))
            continue
        plans.append((tree_id, ordered))
        outcomes.append(TreeOutcome(tree_id=tree_id, status="created", added=[row["message_id"] for row in ordered],
                                    orphans=orphans))
    created = {outcome.tree_id: outcome for outcome in outcomes if outcome.status == "created"}
    try:
        with transaction.atomic():
            return outcomes, _trees_write(plans, state=state)
    except DatabaseError:
        users_created = 0
        for tree_id, rows in plans:
            try:
                with transaction.atomic():
                    users_created += _trees_write([(tree_id, rows)], state=state)
            except DatabaseError as error:
                outcome = created[tree_id]
                outcome.status, outcome.added, outcome.error = "refused", [], f"the database refused it: {error}"
        return outcomes, users_created


def _changes_apply(changes, rows_by_id: dict[str, dict], db: dict[str, dict]) -> None:
    fields_by_message: dict = {}
    for change in changes:
        fields_by_message.setdefault(change.message_id, set()).add(CARRIED_FIELDS[change.field])
        change.applied = True
    for message_id, names in fields_by_message.items():
        values = {name: value for name, value in carried_values(rows_by_id[message_id]).items() if name in names}
        if "emojis" in values:
            values["red_flags"] = values["emojis"].get("red_flag", 0) or 0
        if "text" in values:  # the text before it, kept as moderators' edits keep it
            MessageRevision.objects.create(message_id=message_id, text=db[message_id]["text"])
            values["edited"] = True
        Message.objects.filter(pk=message_id).update(**values)


@transaction.atomic
def tree_merge(tree_id: str, rows: list[dict], *, update_changed: bool) -> tuple[TreeOutcome, int]:
    """Add the file's messages that the tree lacks (and take the file's values of changed fields when
    `update_changed`); under the tree lock, the counters recomputed after. Raises TreeRefused."""
    try:
        tree = tree_locked(tree_id)
    except MessageTree.DoesNotExist:
        raise TreeRefused("the tree was deleted while the file was imported") from None
    db = existing_messages([tree_id], [row["message_id"] for row in rows])
    plan = merge_plan(tree_id, rows, db)
    users, users_created = placeholder_users({str(row["user_id"]) for row in plan.new_rows if row.get("user_id")})
    rows_insert(Message, _new_messages(plan.new_rows, tree_id=tree_id, tree_lang=tree.lang, users=users,
                                           now=timezone.now()))
    if update_changed and plan.changes:
        _changes_apply(plan.changes, {row["message_id"]: row for row in rows}, db)
    services.tree_counters_recompute(tree)
    status = "merged" if plan.new_rows else "changed"
    return TreeOutcome(tree_id=tree_id, status=status, added=[row["message_id"] for row in plan.new_rows],
                       changes=plan.changes), users_created
