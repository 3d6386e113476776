"""Benchmark of the leaderboard: seed many users and contribution events into an empty PostgreSQL
database, then time the full rebuild of each frame, the single-user score refresh and the
leaderboard read path, and check that every leaderboard is right.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oasst_lbbench \
        python bench/leaderboard.py --users 100000 --events 1000000 --seed 1

The database named in DATABASE_URL is created when missing and migrated; the script refuses
anything but PostgreSQL and any database that already holds users or another application's
tables. See bench/README.md for what each figure means and the targets.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import django
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/leaderboard.py`: the project must be importable
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from oasst.models import User  # noqa: E402
from ranking import scoring  # noqa: E402
from ranking.models import ContributionEvent, LeaderboardEntry, UserScore  # noqa: E402
from ranking.services import leaderboard_rebuild, user_scores_refresh  # noqa: E402

logger = logging.getLogger("bench.leaderboard")

SEED_DAYS = 60
USERNAME_PREFIX = "lbbench-"
# How often each kind of event happens: reviews (labels) and rankings are most of the work, replies
# less, prompts rarer; "accepted" follows most replies, a good ranking half the rankings, and a
# consensus rank 1st/2nd/3rd is earned by few replies.
KIND_SHARES = {
    scoring.SIMPLE_LABEL: 0.25, scoring.FULL_LABEL: 0.15, scoring.RANKING: 0.18, scoring.GOOD_RANKING: 0.09,
    scoring.ASSISTANT_REPLY: 0.08, scoring.PROMPTER_REPLY: 0.06, scoring.PROMPT: 0.03,
    scoring.ACCEPTED_ASSISTANT_REPLY: 0.06, scoring.ACCEPTED_PROMPTER_REPLY: 0.045, scoring.ACCEPTED_PROMPT: 0.02,
    scoring.RANKED_1ST: 0.012, scoring.RANKED_2ND: 0.012, scoring.RANKED_3RD: 0.011,
}
ZIPF_EXPONENT = 1.1  # user at activity rank r contributes in proportion to r ** -1.1
HIDDEN_SHARE = 0.03
BANNED_SHARE = 0.005
TARGETS = {"rebuild_total_s": 10.0, "refresh_p95_ms": 20.0}


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


def git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


# --- The database --------------------------------------------------------------------------------


def check_postgresql() -> None:
    if connection.vendor != "postgresql":
        raise SystemExit(f"refusing {connection.vendor}: this benchmark needs PostgreSQL "
                         "(DATABASE_URL=postgres://...)")


def database_create_if_missing() -> None:
    """CREATE DATABASE the configured name when it does not exist yet (through the `postgres` database)."""
    import psycopg
    from psycopg import sql

    config = settings.DATABASES["default"]
    params = {"host": config.get("HOST") or None, "port": config.get("PORT") or None,
              "user": config.get("USER") or None, "password": config.get("PASSWORD") or None}
    with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5,
                         **{k: v for k, v in params.items() if v}) as maintenance:
        if maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone():
            return
        maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
        logger.info("created database %s", config["NAME"])


def database_prepare() -> None:
    """Refuse a database that holds users or another application's tables; then migrate it."""
    check_postgresql()
    name = settings.DATABASES["default"]["NAME"]
    tables = set(connection.introspection.table_names())
    foreign = tables - set(connection.introspection.django_table_names()) - {"django_migrations"}
    if foreign:
        raise SystemExit(f"refusing database {name!r}: it holds tables of another application "
                         f"({', '.join(sorted(foreign)[:5])}); name an empty database in DATABASE_URL")
    if User._meta.db_table in tables and User.objects.exists():
        raise SystemExit(f"refusing database {name!r}: it already holds {User.objects.count()} users; "
                         "name an empty database in DATABASE_URL (it is created when missing)")
    call_command("migrate", interactive=False, verbosity=0)


# --- Seeding -------------------------------------------------------------------------------------


def _user_columns() -> tuple[list[str], dict[str, object]]:
    """Every concrete column of oasst_user but the id, with the value shared by all seeded users;
    a NOT NULL column the script does not know gets its model default, or the script stops."""
    shared = {"password": "!", "is_superuser": False, "is_staff": False, "is_active": True, "first_name": "",
              "last_name": "", "preferred_language": "en", "ban_reason": "", "streak_days": 0, "last_login": None,
              "last_activity_at": None, "streak_last_day_at": None}
    per_user = {"username", "email", "display_name", "date_joined", "tos_accepted_at", "show_on_leaderboard",
                "is_banned"}
    columns = []
    for field in User._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        if field.name in per_user or field.name in shared:
            continue
        default = field.get_default()
        if default is None and not field.null:
            raise SystemExit(f"oasst_user.{field.column} is NOT NULL without a default: teach the seeder about it")
        shared[field.name] = default
    names = {field.column: field.name for field in User._meta.concrete_fields}
    return columns, {names[c]: shared[names[c]] for c in columns if names[c] in shared}


def seed_users(*, count: int, rng: np.random.Generator, now: datetime) -> dict:
    """COPY `count` users into oasst_user; returns their ids by activity rank (0: the heaviest
    contributor). The 2nd and 3rd heaviest are hidden and banned, so the checks see them left out."""
    columns, shared = _user_columns()
    names = {field.column: field.name for field in User._meta.concrete_fields}
    activity_order = rng.permutation(count)  # activity rank -> position: ids say nothing about activity
    hidden = rng.random(count) < HIDDEN_SHARE
    banned = rng.random(count) < BANNED_SHARE
    if count >= 3:
        hidden[activity_order[1]], banned[activity_order[2]] = True, True
    joined_seconds = rng.uniform(SEED_DAYS * 86400, (SEED_DAYS + 30) * 86400, count)
    named = rng.random(count) < 0.3
    start = time.perf_counter()
    with connection.cursor() as cursor:
        copy_sql = f"COPY {User._meta.db_table} ({', '.join(columns)}) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy:
            for i in tqdm(range(count), desc="users", unit=" rows", mininterval=1, leave=False):
                username = f"{USERNAME_PREFIX}{i:07d}"
                joined = now - timedelta(seconds=float(joined_seconds[i]))
                row = {**shared, "username": username, "email": f"{username}@bench.invalid",
                       "display_name": f"Contributor {i}" if named[i] else "", "date_joined": joined,
                       "tos_accepted_at": joined, "show_on_leaderboard": not hidden[i], "is_banned": bool(banned[i])}
                copy.write_row([row[names[c]] for c in columns])
        cursor.execute(f"SELECT id FROM {User._meta.db_table} WHERE username LIKE %s ORDER BY username",
                       [f"{USERNAME_PREFIX}%"])
        ids = np.array([row[0] for row in cursor.fetchall()], dtype=np.int64)
    return {"by_activity": ids[activity_order], "seconds": time.perf_counter() - start}


def seed_events(*, count: int, by_activity: np.ndarray, rng: np.random.Generator, now: datetime) -> float:
    """COPY `count` events: users drawn Zipf-like by activity rank, kinds by KIND_SHARES, times uniform
    over the last SEED_DAYS days, written in time order as a live table would be. Returns seconds."""
    ranks = np.arange(1, len(by_activity) + 1, dtype=np.float64)
    weights = ranks ** -ZIPF_EXPONENT
    users = by_activity[rng.choice(len(by_activity), size=count, p=weights / weights.sum())]
    kinds = np.array(list(KIND_SHARES))
    shares = np.array(list(KIND_SHARES.values()))
    kind_of = kinds[rng.choice(len(kinds), size=count, p=shares / shares.sum())]
    age_us = np.sort(rng.integers(0, SEED_DAYS * 86400 * 10**6, size=count))[::-1]
    start = time.perf_counter()
    base = now.astimezone(UTC).replace(tzinfo=None)
    stamps = np.datetime_as_string(np.datetime64(base, "us") - age_us.astype("timedelta64[us]"), unit="us")
    chunk = 100_000
    with connection.cursor() as cursor:
        copy_sql = f"COPY {ContributionEvent._meta.db_table} (user_id, kind, created_at) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy, tqdm(total=count, desc="events", unit=" rows",
                                                          mininterval=1, leave=False) as progress:
            for lo in range(0, count, chunk):
                hi = min(count, lo + chunk)
                lines = "".join(f"{u}\t{k}\t{s}+00\n" for u, k, s in
                                zip(users[lo:hi].tolist(), kind_of[lo:hi].tolist(), stamps[lo:hi].tolist(),
                                    strict=True))
                copy.write(lines)
                progress.update(hi - lo)
    return time.perf_counter() - start


def seed(*, users: int, events: int, seed: int, now: datetime | None = None) -> dict:
    """Seed users and events, then VACUUM ANALYZE them (what autovacuum does to a live table).
    Returns the timings and what the timing and checking steps need."""
    now = now or timezone.now()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    seeded = seed_users(count=users, rng=rng, now=now)
    logger.info("seeded %d users in %.1f s", users, seeded["seconds"])
    events_seconds = seed_events(count=events, by_activity=seeded["by_activity"], rng=rng, now=now)
    logger.info("seeded %d events in %.1f s", events, events_seconds)
    analyze_start = time.perf_counter()
    with connection.cursor() as cursor:
        for model in (User, ContributionEvent):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
    analyze_seconds = time.perf_counter() - analyze_start
    return {"now": now, "rng": rng, "by_activity": seeded["by_activity"],
            "hidden": User.objects.filter(show_on_leaderboard=False).count(),
            "banned": User.objects.filter(is_banned=True).count(),
            "seconds": {"users": round(seeded["seconds"], 2), "events": round(events_seconds, 2),
                        "vacuum_analyze": round(analyze_seconds, 2),
                        "total": round(time.perf_counter() - start, 2)}}


# --- Timings -------------------------------------------------------------------------------------


def time_rebuilds(*, repeats: int = 3) -> dict:
    """Each frame's full leaderboard_rebuild, `repeats` times: ranked users, every run, min and median."""
    result = {}
    for frame in scoring.FRAMES:
        runs, ranked = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            ranked = leaderboard_rebuild(frame=frame)
            runs.append(time.perf_counter() - start)
        result[frame] = {"ranked": ranked, "runs_s": [round(r, 3) for r in runs], "min_s": round(min(runs), 3),
                         "median_s": round(statistics.median(runs), 3)}
        logger.info("rebuild %s: %d ranked, min %.2f s", frame, ranked, min(runs))
    return result


def _ms_summary(seconds: list[float]) -> dict:
    ordered = sorted(s * 1000 for s in seconds)
    return {"n": len(ordered), "p50_ms": round(percentile(ordered, 50), 2), "p95_ms": round(percentile(ordered, 95), 2),
            "max_ms": round(ordered[-1], 2)}


def time_refreshes(*, sample: int, by_activity: np.ndarray, rng: np.random.Generator) -> dict:
    """user_scores_refresh for `sample` users drawn uniformly, and for the heaviest contributor (best of 3)."""
    chosen = rng.choice(by_activity, size=min(sample, len(by_activity)), replace=False)
    users = {user.pk: user for user in User.objects.filter(pk__in=chosen.tolist())}
    seconds = []
    for user_id in chosen.tolist():
        start = time.perf_counter()
        user_scores_refresh(user=users[user_id])
        seconds.append(time.perf_counter() - start)
    heaviest = User.objects.get(pk=int(by_activity[0]))
    heaviest_runs = []
    for _ in range(3):
        start = time.perf_counter()
        user_scores_refresh(user=heaviest)
        heaviest_runs.append(time.perf_counter() - start)
    return {**_ms_summary(seconds), "heaviest_user_ms": round(min(heaviest_runs) * 1000, 2),
            "heaviest_user_events": ContributionEvent.objects.filter(user=heaviest).count(),
            "user_ids": [int(u) for u in chosen]}


def time_reads(*, requests: int, by_activity: np.ndarray, frame: str = "total") -> dict:
    """GET /api/v1/leaderboard/<frame>/ through Django's test client with a token, as the API serves it
    (DEBUG off): page 1 and a page near the end, asked by the top user, a mid-table user and a user
    with no points in turn."""
    ranked = LeaderboardEntry.objects.filter(frame=frame).count()
    middle = LeaderboardEntry.objects.filter(frame=frame, rank=max(1, ranked // 2)).values_list("user_id", flat=True)
    unranked = User.objects.exclude(pk__in=LeaderboardEntry.objects.filter(frame=frame).values("user_id"))
    askers = [int(by_activity[0]), *middle[:1], *unranked.values_list("pk", flat=True)[:1]]
    tokens = [Token.objects.get_or_create(user_id=user_id)[0].key for user_id in askers]
    last_page = max(1, math.ceil(ranked / 50))
    result, checks = {}, []
    client = Client()
    with override_settings(DEBUG=False, ALLOWED_HOSTS=["testserver"]):
        for label, page in (("page_1", 1), ("last_page", last_page)):
            seconds = []
            for i in range(requests):
                start = time.perf_counter()
                response = client.get(f"/api/v1/leaderboard/{frame}/", {"page": page}, secure=True,
                                      HTTP_AUTHORIZATION=f"Token {tokens[i % len(tokens)]}")
                seconds.append(time.perf_counter() - start)
                if i < len(tokens):
                    body = response.json()
                    ranks = [entry["rank"] for entry in body.get("results", [])]
                    first = (page - 1) * 50 + 1
                    checks.append(response.status_code == 200 and ranks == list(range(first, first + len(ranks)))
                                  and bool(ranks or ranked == 0))
            result[label] = {"page": page, **_ms_summary(seconds)}
    result["answers_ok"] = all(checks)
    return result


# --- Checks --------------------------------------------------------------------------------------


def expected_scores(*, since: datetime | None, user_ids: list[int] | None = None, ranked_only: bool = False) -> dict:
    """{user id: points} computed in SQL straight from SPEC's formula, independent of the services;
    users with no points are left out."""
    weights = ", ".join(f"('{kind}', {weight}::numeric)" for kind, weight in scoring.WEIGHTS.items())
    where, params = [], []
    if since is not None:
        where.append("e.created_at >= %s")
        params.append(since)
    if user_ids is not None:
        where.append("e.user_id = ANY(%s)")
        params.append(user_ids)
    visible = "JOIN oasst_user u ON u.id = p.user_id AND u.show_on_leaderboard AND u.is_active AND NOT u.is_banned"
    query = f"""
        WITH counts AS (SELECT e.user_id, e.kind, count(*) AS n FROM {ContributionEvent._meta.db_table} e
                        {"WHERE " + " AND ".join(where) if where else ""} GROUP BY e.user_id, e.kind),
             points AS (SELECT c.user_id, sum(floor(w.weight * c.n))::int AS score
                        FROM counts c JOIN (VALUES {weights}) AS w(kind, weight) ON w.kind = c.kind
                        GROUP BY c.user_id)
        SELECT p.user_id, p.score FROM points p {visible if ranked_only else ""} WHERE p.score > 0"""
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return dict(cursor.fetchall())


def verify_frame(frame: str) -> dict:
    """The frame's entries against SPEC: ranks 1..n unique, scores non-increasing, ties by user id,
    every score and level as computed independently, no hidden, banned or inactive user."""
    table = LeaderboardEntry._meta.db_table
    entries = list(LeaderboardEntry.objects.filter(frame=frame).order_by("rank")
                   .values_list("rank", "user_id", "score", "level", "built_at"))
    built = {entry[4] for entry in entries}
    span = scoring.FRAMES[frame]
    now = next(iter(built)) if len(built) == 1 else timezone.now()  # an empty frame: no build time to use
    expected = expected_scores(since=now - span if span else None, ranked_only=True)
    with connection.cursor() as cursor:
        cursor.execute(f"""SELECT count(*) FROM {table} l JOIN oasst_user u ON u.id = l.user_id
                           WHERE l.frame = %s AND (NOT u.show_on_leaderboard OR u.is_banned OR NOT u.is_active)""",
                       [frame])
        excluded_present = cursor.fetchone()[0]
    ranks = [entry[0] for entry in entries]
    scores = [entry[2] for entry in entries]
    in_order = all(a > b or (a == b and ua < ub) for (_, ua, a, *_), (_, ub, b, *_) in pairwise(entries))
    return {
        "ranked": len(entries),
        "one_build": len(built) <= 1,
        "ranks_consecutive": ranks == list(range(1, len(entries) + 1)),
        "scores_non_increasing": all(a >= b for a, b in pairwise(scores)),
        "ties_by_user_id": in_order,
        "scores_match_spec": expected == {entry[1]: entry[2] for entry in entries},
        "levels_match": all(entry[3] == scoring.level(entry[2]) for entry in entries),
        "hidden_banned_absent": excluded_present == 0,
    }


def verify_refreshes(user_ids: list[int]) -> bool:
    """Each refreshed user's stored score in every frame equals the independent count at its refresh time."""
    for score in UserScore.objects.filter(user_id__in=user_ids):
        span = scoring.FRAMES[score.frame]
        since = score.updated_at - span if span else None
        if score.score != expected_scores(since=since, user_ids=[score.user_id]).get(score.user_id, 0):
            return False
    return UserScore.objects.filter(user_id__in=user_ids).count() == len(user_ids) * len(scoring.FRAMES)


def verify(*, refreshed: list[int], hidden: int, banned: int) -> dict:
    frames = {frame: verify_frame(frame) for frame in scoring.FRAMES}
    ok = all(all(v for k, v in checks.items() if k != "ranked") for checks in frames.values())
    refresh_ok = verify_refreshes(refreshed)
    return {"frames": frames, "refresh_scores_match_spec": refresh_ok, "hidden_users": hidden,
            "banned_users": banned, "ok": ok and refresh_ok}


# --- The run -------------------------------------------------------------------------------------


def run(*, users: int, events: int, seed_value: int, repeats: int = 3, refresh_sample: int = 200,
        read_requests: int = 100) -> dict:
    """Seed, time and check; the whole result as a dict (what leaderboard.json holds)."""
    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the figures
    seeded = seed(users=users, events=events, seed=seed_value)
    with override_settings(DEBUG=False):  # as in production: no query log
        rebuilds = time_rebuilds(repeats=repeats)
        refreshes = time_refreshes(sample=refresh_sample, by_activity=seeded["by_activity"], rng=seeded["rng"])
    reads = time_reads(requests=read_requests, by_activity=seeded["by_activity"])
    checks = verify(refreshed=refreshes.pop("user_ids"), hidden=seeded["hidden"], banned=seeded["banned"])
    checks["read_answers_ok"] = reads.pop("answers_ok")
    checks["ok"] = checks["ok"] and checks["read_answers_ok"]
    targets = {"rebuild_total_s": {"target": TARGETS["rebuild_total_s"], "measured": rebuilds["total"]["median_s"],
                                   "met": rebuilds["total"]["median_s"] < TARGETS["rebuild_total_s"]},
               "refresh_p95_ms": {"target": TARGETS["refresh_p95_ms"], "measured": refreshes["p95_ms"],
                                  "met": refreshes["p95_ms"] < TARGETS["refresh_p95_ms"]}}
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    return {
        "benchmark": "leaderboard",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "parameters": {"users": users, "events": events, "seed": seed_value, "days": SEED_DAYS,
                       "zipf_exponent": ZIPF_EXPONENT, "repeats": repeats, "refresh_sample": refresh_sample,
                       "read_requests": read_requests},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "postgresql": server, "load_before": load_before,
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
        "seeding_s": seeded["seconds"],
        "rebuild": rebuilds,
        "refresh": refreshes,
        "read": reads,
        "targets": targets,
        "verification": checks,
    }


def print_table(result: dict) -> None:
    p = result["parameters"]
    print(f"\nleaderboard benchmark: {p['users']:,} users, {p['events']:,} events over {p['days']} days, "
          f"seed {p['seed']}, commit {result['commit']}")
    s = result["seeding_s"]
    m = result["machine"]
    print(f"{m['cpus']} cpus, PostgreSQL {m['postgresql']}, load average {m['load_before'][0]} before, "
          f"{m['load_after'][0]} after")
    print(f"seeding: users {s['users']} s, events {s['events']} s, vacuum analyze {s['vacuum_analyze']} s, "
          f"total {s['total']} s\n")
    print(f"{'measure':<34}{'n':>8}{'min / p50':>14}{'median / p95':>16}{'max':>10}")
    for frame, r in result["rebuild"].items():
        print(f"{'rebuild ' + frame + ' (s)':<34}{r['ranked']:>8,}{r['min_s']:>14.3f}{r['median_s']:>16.3f}"
              f"{max(r['runs_s']):>10.3f}")
    r = result["refresh"]
    print(f"{'user_scores_refresh (ms)':<34}{r['n']:>8}{r['p50_ms']:>14.2f}{r['p95_ms']:>16.2f}{r['max_ms']:>10.2f}")
    print(f"{'  heaviest user (ms, best of 3)':<34}{r['heaviest_user_events']:>8,}{r['heaviest_user_ms']:>14.2f}")
    for label, r in result["read"].items():
        print(f"{'GET leaderboard/total ' + label + ' (ms)':<34}{r['n']:>8}{r['p50_ms']:>14.2f}{r['p95_ms']:>16.2f}"
              f"{r['max_ms']:>10.2f}")
    print()
    for name, t in result["targets"].items():
        print(f"target {name}: {t['measured']} (under {t['target']}) {'met' if t['met'] else 'MISSED'}")
    v = result["verification"]
    for frame, checks in v["frames"].items():
        failed = [k for k, ok in checks.items() if k != "ranked" and not ok]
        print(f"check {frame}: {checks['ranked']:,} ranked, {'ok' if not failed else 'FAILED: ' + ', '.join(failed)}")
    print(f"check refreshed scores: {'ok' if v['refresh_scores_match_spec'] else 'FAILED'}; "
          f"read answers: {'ok' if v['read_answers_ok'] else 'FAILED'}; "
          f"{v['hidden_users']} hidden and {v['banned_users']} banned users absent from every frame")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="rebuilds per frame")
    parser.add_argument("--refresh-sample", type=int, default=200, help="users whose scores are refreshed")
    parser.add_argument("--read-requests", type=int, default=100, help="GETs per leaderboard page")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "leaderboard.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    warnings.filterwarnings("ignore", "No directory at", UserWarning)  # static files are not collected here
    check_postgresql()
    database_create_if_missing()
    database_prepare()
    result = run(users=args.users, events=args.events, seed_value=args.seed, repeats=args.repeats,
                 refresh_sample=args.refresh_sample, read_requests=args.read_requests)
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwritten to {out}")
    return 0 if result["verification"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
