"""Benchmark of the oasst export and import: seed PostgreSQL with COPY, then time the export to
`.jsonl` by both engines side by side (the Python one and the PostgreSQL one that `auto` picks
there; messages/s, CPU seconds and peak memory of the exporting process), the PostgreSQL engine to
`.jsonl.gz` at each gzip level asked, the raw `COPY (SELECT ...) TO STDOUT` of the same rows as the
floor, and the import of part of the export. It records the commit and the machine's load.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oasst_exp_bench \
        python bench/export.py --trees 100000 --out-dir /tmp/oasst_exp_bench

Each tree has 10 messages (a prompt, 3 ranked assistant replies, a prompter reply under each, and
3 ranked assistant replies under the first of those). The database must exist and be empty of
trees (or be seeded by an earlier run with the same --trees, reused with --reuse).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/export.py`: the project must be importable
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from tasks.export import GZIP_LEVEL, ExportFilters, export_to_file  # noqa: E402
from tasks.importer import import_file  # noqa: E402
from tasks.models import Message, MessageTree  # noqa: E402

MESSAGES_PER_TREE = 10
# (parent index, role, rank) of each message after the prompt, in insertion order.
SHAPE = [(0, "assistant", 0), (0, "assistant", 1), (0, "assistant", 2),
         (1, "prompter", None), (2, "prompter", None), (3, "prompter", None),
         (4, "assistant", 1), (4, "assistant", 0), (4, "assistant", 2)]
DEPTH = [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def _columns(model) -> list:
    return [field for field in model._meta.concrete_fields]


def _row(model_fields, values: dict) -> list:
    row = []
    for field in model_fields:
        if field.attname in values:
            row.append(values[field.attname])
        elif field.has_default():
            default = field.get_default()
            row.append(json.dumps(default) if isinstance(default, (dict, list)) else default)
        else:
            row.append(None)
    return row


def seed(trees: int) -> None:
    tree_fields, message_fields = _columns(MessageTree), _columns(Message)
    tree_sql = (f"COPY {MessageTree._meta.db_table} ({', '.join(f.column for f in tree_fields)}) FROM STDIN")
    message_sql = f"COPY {Message._meta.db_table} ({', '.join(f.column for f in message_fields)}) FROM STDIN"
    start = datetime(2025, 1, 1, tzinfo=UTC)
    texts = ["How do tides work, and why are there two a day?",
             "The moon's gravity pulls the near ocean, and inertia the far one, so two bulges form.",
             "Tides are caused by the moon and, to a lesser degree, the sun."]
    with connection.cursor() as cursor:
        raw = cursor.cursor
        ids = []
        with raw.copy(tree_sql) as copy:
            for number in range(trees):
                tree_id = uuid.uuid4()
                ids.append(tree_id)
                moment = start + timedelta(seconds=number)
                copy.write_row(_row(tree_fields, {
                    "id": tree_id, "state": "ready_for_export", "halted_from_state": "", "lang": "en",
                    "origin": "bench", "goal_tree_size": 12, "max_depth": 5, "max_children_count": 3,
                    "message_count": MESSAGES_PER_TREE, "accepted_count": MESSAGES_PER_TREE,
                    "created_at": moment, "updated_at": moment}))
        with raw.copy(message_sql) as copy:
            for number, tree_id in enumerate(ids):
                moment = start + timedelta(seconds=number)
                message_ids = [tree_id] + [uuid.uuid4() for _ in SHAPE]
                for index, message_id in enumerate(message_ids):
                    parent, role, rank = (None, "prompter", None) if index == 0 else SHAPE[index - 1]
                    copy.write_row(_row(message_fields, {
                        "id": message_id, "tree_id": tree_id,
                        "parent_id": None if parent is None else message_ids[parent], "author_id": None,
                        "task_id": None, "client_id": "", "role": role, "text": f"{texts[index % 3]} #{number}",
                        "lang": "en", "depth": DEPTH[index], "created_at": moment + timedelta(milliseconds=index),
                        "review_count": 3, "review_result": True, "rank": rank, "model_name": "",
                        "emojis": json.dumps({"+1": index % 3} if index % 3 else {}),
                        "labels": json.dumps({"spam": {"value": 0.0, "count": 3}}),
                    }))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {MessageTree._meta.db_table}; ANALYZE {Message._meta.db_table}")


def copy_floor(out: Path) -> dict:
    sql = (f"COPY (SELECT m.* FROM {Message._meta.db_table} m JOIN {MessageTree._meta.db_table} t "
           f"ON t.id = m.tree_id WHERE t.state = 'ready_for_export' ORDER BY t.created_at, t.id) TO STDOUT")
    started = time.perf_counter()
    size = 0
    with connection.cursor() as cursor, open(out, "wb") as handle:
        with cursor.cursor.copy(sql) as copy:
            for block in copy:
                size += len(block)
                handle.write(block)
    return {"seconds": time.perf_counter() - started, "bytes": size}


def child(args) -> None:
    """Run one measured step in this (fresh) process and print its figures as JSON."""
    started = time.perf_counter()
    if args.child == "export":
        result = export_to_file(path=args.path, filters=ExportFilters(), engine=args.engine, gzip_level=args.gzip_level)
        figures = {"trees": result.trees, "messages": result.messages, "sha256": result.sha256}
    else:
        report = import_file(path=args.path)
        figures = {"trees": report.trees_created, "messages": report.messages_created,
                   "skipped": len(report.trees_skipped)}
    figures["seconds"] = time.perf_counter() - started
    figures["cpu_seconds"] = round(time.process_time(), 2)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["bytes"] = Path(args.path).stat().st_size
    print(json.dumps(figures))


def measured(step: str, path: Path, engine: str = "auto", gzip_level: int = GZIP_LEVEL) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", step, "--path", str(path), "--engine", engine,
                             "--gzip-level", str(gzip_level)], check=True, capture_output=True, text=True).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    figures["messages_per_s"] = round(figures["messages"] / figures["seconds"])
    figures["load_after"] = [round(load, 2) for load in os.getloadavg()]
    return figures


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=100_000)
    parser.add_argument("--import-trees", type=int, default=5000, help="trees of the export to re-import")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/oasst_exp_bench"))
    parser.add_argument("--reuse", action="store_true", help="keep the trees of an earlier run")
    parser.add_argument("--gzip-levels", default="1,2,3,4,5,6", help="gzip levels to time, comma-separated")
    parser.add_argument("--child", choices=["export", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--gzip-level", type=int, default=GZIP_LEVEL, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if connection.vendor != "postgresql":
        sys.exit("This benchmark needs PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0)
    existing = MessageTree.objects.count()
    if existing and not (args.reuse and existing == args.trees):
        sys.exit(f"The database holds {existing} trees; use an empty one (or --reuse with the same --trees).")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"trees": args.trees, "messages": args.trees * MESSAGES_PER_TREE,
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "postgres": connection.pg_version,
                                 "load_before": [round(load, 2) for load in os.getloadavg()]},
                     "commit": commit(), "when": datetime.now(UTC).isoformat()}
    if not existing:
        started = time.perf_counter()
        seed(args.trees)
        results["seed_seconds"] = round(time.perf_counter() - started, 1)
    floor = copy_floor(args.out_dir / "floor.copy")
    floor["messages_per_s"] = round(results["messages"] / floor["seconds"])
    results["copy_floor"] = floor
    for engine in ("python", "postgresql"):
        results[f"{engine} .jsonl"] = measured("export", args.out_dir / f"export-{engine}.jsonl", engine)
        print(engine, ".jsonl", results[f"{engine} .jsonl"], flush=True)
    results["same_file"] = (results["python .jsonl"]["sha256"] == results["postgresql .jsonl"]["sha256"]
                            == file_sha256(args.out_dir / "export-python.jsonl"))
    for level in (int(level) for level in args.gzip_levels.split(",") if level):
        name = f"postgresql .jsonl.gz level {level}"
        results[name] = measured("export", args.out_dir / f"export-gzip{level}.jsonl.gz", "postgresql", level)
        print(name, results[name], flush=True)

    subset, exported = args.out_dir / "import.jsonl", args.out_dir / "export-python.jsonl"
    with open(exported, encoding="utf-8") as source, open(subset, "w", encoding="utf-8") as out:
        tree_ids = []
        for line in source:
            if len(tree_ids) >= args.import_trees:
                break
            tree_ids.append(json.loads(line)["message_tree_id"])
            out.write(line)
    results["import_skip_existing"] = measured("import", subset)
    MessageTree.objects.filter(pk__in=tree_ids).delete()
    results["import"] = measured("import", subset)
    print(json.dumps(results, indent=2))
    (args.out_dir / "export.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
