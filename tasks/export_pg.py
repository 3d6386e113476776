"""The export on PostgreSQL, at the speed of the disk: one streamed query (a server-side cursor)
whose every row is a message already written as JSON by PostgreSQL (its stored JSON columns as
they are, its text escaped by `to_json`), in tree order; Python only leaves out what the switches
drop, nests replies into trees and, when anonymising, writes the hashed ids.

It writes the same records as tasks.export's Python path (tests/tasks/test_export_pg.py runs both).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from functools import lru_cache
from itertools import groupby
from operator import itemgetter

from django.db import connection, transaction

from tasks.export_query import ExportFilters, anonymize_node, anonymizer, events_by_message, kept_ids, trees_for_export
from tasks.models import Message

TREE_BATCH = 500  # trees whose events are read in one query, and held at once
FETCH_SIZE = 5000  # rows per round trip of the cursor
USER_IDS_CACHED = 65536  # hashed user ids kept: a user writes many messages
# Row columns.
TREE_ID, TREE_STATE, TREE_ORIGIN, MESSAGE_ID, PARENT_ID, EXCLUDED, SELECTED, HEAD, AUTHOR_ID = range(9)
# datetime.isoformat() in UTC: microseconds only where there are some.
_CREATED = "replace(to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), '.000000', '')"


def _json_field(name: str, value: str, present: str | None = None) -> str:
    """SQL for a `"name": value` pair, or NULL (left out by concat_ws) where `present` is false."""
    pair = f"'\"{name}\": ' || {value}"
    return f"CASE WHEN {present} THEN {pair} END" if present else pair


def _stored_json(column: str) -> str:
    """The stored JSON as its text, left out where Python would find it empty (`value or None`)."""
    return _json_field(column, f"m.{column}::text",
                       f"m.{column} IS NOT NULL AND m.{column} NOT IN ('{{}}', '[]', 'null', '\"\"', '0', 'false')")


def _message_head(filters: ExportFilters, with_ids: bool) -> str:
    """SQL for a message node as JSON without its closing brace (replies, the tree's fields or events
    follow); without the ids and the opening brace when Python writes hashed ids in front."""
    ids = [
        _json_field("message_id", "'\"' || m.id::text || '\"'"),
        _json_field("parent_id", "'\"' || m.parent_id::text || '\"'", "m.parent_id IS NOT NULL"),
        _json_field("user_id", "'\"' || m.author_id::text || '\"'", "m.author_id IS NOT NULL"),
    ]
    fields = [
        _json_field("created_date", f"'\"' || {_CREATED} || '\"'"),
        *(_json_field(name, f"to_json(m.{name})::text", f"m.{name} <> ''") for name in ("text", "role", "lang")),
        _json_field("review_count", "m.review_count::text"),
        _json_field("review_result", "m.review_result::text", "m.review_result IS NOT NULL"),
        _json_field("deleted", "m.deleted::text"),
        _json_field("rank", "m.rank::text", "m.rank IS NOT NULL"),
        _json_field("synthetic", "m.synthetic::text"),
        _json_field("model_name", "to_json(m.model_name)::text", "m.model_name <> ''"),
        _stored_json("emojis"),
        *([_stored_json("labels")] if filters.labels else []),
    ]
    return ("'{' || " if with_ids else "") + "concat_ws(', ', " + ", ".join((ids if with_ids else []) + fields) + ")"


def export_query(filters: ExportFilters, fmt: str, *, with_ids: bool = True) -> tuple[str, list]:
    """The statement and its parameters: rows of the columns named above, in tree order, then
    parents before children, replies by rank (trees) or by time (messages)."""
    params: list = []
    # Flags and missing ids as text, '' for false or missing: no booleans or UUIDs to build in Python.
    excluded = " OR ".join(f"m.{column}" for column, included in (
        ("deleted", filters.include_deleted), ("review_result IS FALSE", filters.include_spam),
        ("synthetic", filters.include_synthetic)) if not included) or "FALSE"
    selected = "TRUE"
    if filters.user_id is not None:
        selected = "m.author_id IS NOT DISTINCT FROM %s"
        params.append(filters.user_id)
    trees = trees_for_export(filters).values("id", "state", "origin", "created_at")
    trees_sql, trees_params = trees.query.sql_with_params()
    params.extend(trees_params)
    order = "m.depth, m.rank NULLS LAST, m.created_at, m.id" if fmt == "trees" else "m.depth, m.created_at, m.id"
    # Each tree's messages sorted on their own (a lateral subquery), the trees in order: rows stream
    # from the first tree on, where one sort of every message would first spill them all to disk.
    columns = ("t.id::text, '\"tree_state\": ' || to_json(t.state)::text, coalesce(to_json(t.origin)::text, 'null'),"
               f" m.id::text, coalesce(m.parent_id::text, ''), CASE WHEN {excluded} THEN 'x' ELSE '' END,"
               f" CASE WHEN {selected} THEN 'x' ELSE '' END, {_message_head(filters, with_ids)},"
               " coalesce(m.author_id::text, '')")
    # Names and Django's SQL only; the values are parameters.
    messages = f"SELECT * FROM {Message._meta.db_table} AS m WHERE m.tree_id = t.id ORDER BY {order}"  # noqa: S608
    statement = f"SELECT {columns} FROM ({trees_sql}) AS t CROSS JOIN LATERAL ({messages}) AS m"  # noqa: S608
    statement += f" ORDER BY t.created_at, t.id, {order}"
    return statement, params


def _rows(statement: str, params: list) -> Iterator:
    """The rows from a named cursor, each batch fetched by a thread while the caller works on the
    one before (psycopg serialises the connection's use: events are read between fetches)."""
    with transaction.atomic(), connection.chunked_cursor() as cursor:  # a named cursor lives in a transaction
        cursor.execute(statement, params)
        batches: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def fetch() -> None:
            try:
                while not stop.is_set():
                    rows = cursor.fetchmany(FETCH_SIZE)
                    batches.put(rows)
                    if not rows:
                        return
            except Exception as error:  # noqa: BLE001 -- raised again in the caller's thread
                batches.put(error)

        reader = threading.Thread(target=fetch, name="export-fetch", daemon=True)
        reader.start()
        try:
            while (rows := batches.get()) != []:
                if isinstance(rows, Exception):
                    raise rows
                yield from rows
        finally:
            stop.set()
            while reader.is_alive():  # a caller that stopped early: free the reader's last put
                with suppress(queue.Empty):
                    batches.get(timeout=0.05)
            reader.join()


def _tree_batches(rows: Iterator[tuple]) -> Iterator[list[list[tuple]]]:
    batch: list = []
    for _, tree_rows in groupby(rows, key=itemgetter(TREE_ID)):
        batch.append(list(tree_rows))
        if len(batch) >= TREE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _hashed_heads(rows: list[tuple], anonymize: Callable[[str], str], user: Callable[[str], str]) -> dict:
    """Each message's head with its hashed ids in front, by message id."""
    hashed = {row[MESSAGE_ID]: anonymize(row[MESSAGE_ID]) for row in rows}
    heads = {}
    for row in rows:
        parent_id, author_id = row[PARENT_ID], row[AUTHOR_ID]
        parent = f', "parent_id": "{hashed.get(parent_id) or anonymize(parent_id)}"' if parent_id else ""
        author = f', "user_id": "{user(author_id)}"' if author_id else ""
        heads[row[MESSAGE_ID]] = f'{{"message_id": "{hashed[row[MESSAGE_ID]]}"{parent}{author}, {row[HEAD]}'
    return heads


def export_lines_pg(*, filters: ExportFilters, fmt: str = "trees",
                    anonymize_seed: str | None = None) -> Iterator[tuple[str, int, str]]:
    """Yields (JSON line, message count, tree id) per tree (trees format) or per message (messages)."""
    anonymize = anonymizer(anonymize_seed) if anonymize_seed is not None else None
    user = lru_cache(maxsize=USER_IDS_CACHED)(anonymize) if anonymize else None
    statement, params = export_query(filters, fmt, with_ids=anonymize is None)
    for batch in _tree_batches(_rows(statement, params)):
        events: dict = {}
        if filters.events:
            found = events_by_message([row[MESSAGE_ID] for rows in batch for row in rows])
            events = {key: ', "events": ' + json.dumps(anonymize_node({"events": value}, anonymize)["events"]
                                                       if anonymize else value, ensure_ascii=False)
                      for key, value in found.items()}
        for rows in batch:
            kept = (kept_ids([(row[MESSAGE_ID], row[PARENT_ID], row[EXCLUDED]) for row in rows])
                    if any(row[EXCLUDED] for row in rows) else None)
            if kept is not None:
                rows = [row for row in rows if row[MESSAGE_ID] in kept]
            if not rows:
                continue
            first = rows[0]
            tree_id = anonymize(first[TREE_ID]) if anonymize else first[TREE_ID]
            heads = (_hashed_heads(rows, anonymize, user) if anonymize else
                     {row[MESSAGE_ID]: row[HEAD] for row in rows})
            if fmt == "trees":
                prompt = _tree_json(rows, heads, events)
                if prompt is not None:
                    yield (f'{{"message_tree_id": "{tree_id}", {first[TREE_STATE]}, "prompt": {prompt}, '
                           f'"origin": {first[TREE_ORIGIN]}}}\n'), len(rows), first[TREE_ID]
            else:
                tree_fields = f', "message_tree_id": "{tree_id}", {first[TREE_STATE]}'
                for row in rows:
                    if row[SELECTED]:
                        message_id = row[MESSAGE_ID]
                        yield f"{heads[message_id]}{tree_fields}{events.get(message_id, '')}}}\n", 1, row[TREE_ID]


def _tree_json(rows: list[tuple], heads: dict, events: dict) -> str | None:
    """The prompt with its replies nested, as tasks.oasst_format.tree_node nests them (the rows come
    with replies in rank order); None without a prompt."""
    children: dict = {}
    root = None
    for row in rows:
        if not row[PARENT_ID]:
            root = row[MESSAGE_ID]
        else:
            children.setdefault(row[PARENT_ID], []).append(row[MESSAGE_ID])
    if root is None:
        return None

    def node(message_id: str) -> str:
        replies = ", ".join([node(child) for child in children.get(message_id, ())])
        return f"{heads[message_id]}, \"replies\": [{replies}]{events.get(message_id, '')}}}"

    return node(root)
