"""Seed a task loop benchmark database with finished trees (bench/export.py's COPY seeding: 10 messages
each, ready_for_export), then leave it as a production database of that size would be: vacuumed and
analysed (what autovacuum does after a bulk load) and checkpointed (the load's writes are on disk before
anything is measured).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oasst_bench python bench/seed_finished_trees.py --trees 100000

bench/task_loop.py runs it for --seed-finished-trees. A database already holding exactly that many
seeded trees is reused (vacuumed and checkpointed again); one holding another number is refused.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/seed_finished_trees.py`: the project must be importable
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from tasks.models import Message, MessageTree, TreeState  # noqa: E402

SEED_ORIGIN = "bench"  # the origin bench/export.py's seed gives its trees


def _export_bench():
    spec = importlib.util.spec_from_file_location("bench_export", Path(__file__).resolve().parent / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeded_trees() -> int:
    return MessageTree.objects.filter(origin=SEED_ORIGIN).count()


def seed_finished_trees(trees: int) -> dict:
    """Seed `trees` finished trees (or reuse them), VACUUM (ANALYZE) the two tables and CHECKPOINT.
    Returns what was done and how long each step took. Needs PostgreSQL, outside a transaction."""
    if connection.vendor != "postgresql":
        raise SystemExit("Seeding finished trees needs PostgreSQL: set DATABASE_URL to the server's database.")
    if trees < 1:
        raise SystemExit("--trees must be at least 1.")
    call_command("migrate", verbosity=0)
    existing = seeded_trees()
    if existing not in (0, trees):
        raise SystemExit(f"The database holds {existing} seeded trees, not {trees}: use a fresh database "
                         f"(or the same number).")
    report: dict = {"trees": trees, "reused": bool(existing)}
    if not existing:
        started = time.perf_counter()
        _export_bench().seed(trees)
        report["seed_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    with connection.cursor() as cursor:  # autovacuum would, soon after a bulk load; it is off on some machines
        cursor.execute(f"VACUUM (ANALYZE) {MessageTree._meta.db_table}, {Message._meta.db_table}")
    report["vacuum_analyze_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
    report["checkpoint_s"] = round(time.perf_counter() - started, 1)
    report["finished_trees"] = MessageTree.objects.filter(origin=SEED_ORIGIN,
                                                          state=TreeState.READY_FOR_EXPORT).count()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, required=True, help="finished trees to seed (10 messages each)")
    args = parser.parse_args(argv)
    report = seed_finished_trees(args.trees)
    print(f"{report['finished_trees']} finished trees ({'reused' if report['reused'] else 'seeded'}"
          + (f" in {report['seed_s']} s" if "seed_s" in report else "")
          + f"); VACUUM (ANALYZE) {report['vacuum_analyze_s']} s, CHECKPOINT {report['checkpoint_s']} s", flush=True)


if __name__ == "__main__":
    main()
