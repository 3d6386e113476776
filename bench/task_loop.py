"""Load benchmark of the task loop: N simulated contributors request a task, acknowledge it and
submit a plausible answer, over and over, against a running server, for a fixed time.

It starts no server, talks only to the given loopback base URL, and stops by itself. See
bench/README.md for the whole procedure (database, users, gunicorn) and what each figure means.

    python bench/task_loop.py --base-url http://127.0.0.1:8010 --tokens bench/results/tokens.json \
        --concurrency 32 --duration 60 --warmup-prompts 20 --burst 30

With --burst N, halfway through the run one more user (the token after the contributors') sends N
task requests at once and keeps what it gets open: it must get at most --pending-cap tasks and
never one item twice (bench/reservation_checks.sql checks the same in the database).

With --seed-finished-trees N, the server's database (DATABASE_URL, PostgreSQL) first gets N finished
trees of 10 messages (bench/seed_finished_trees.py: COPY, then VACUUM ANALYZE and CHECKPOINT), so that
the loop runs against a database the size of a production one.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests

ENDPOINTS = ("request", "ack", "submit", "nack")
NO_TASK_PAUSE = 0.25  # seconds a contributor waits after "no task right now"
ERROR_PAUSE = 0.1

PROMPTS = [
    "How do I explain recursion to a child?",
    "What is the difference between weather and climate?",
    "Write a short poem about the sea at night.",
    "Which houseplants survive in a dark room?",
    "How does a reward model learn from rankings?",
    "Give me three tips for a first job interview.",
    "Why is the sky blue during the day and red at sunset?",
    "How can I make bread without yeast?",
]
ASSISTANT_REPLIES = [
    "Here is a simple way to think about it: start with the smallest case and build up from there.",
    "Good question. There are a few parts to the answer, and the most important one is the first.",
    "In short: it depends on the context, but the usual rule of thumb works in most cases.",
    "Let me walk you through it step by step, with an example at the end.",
    "The main idea is easy to state, and the details follow from it naturally.",
]
PROMPTER_REPLIES = [
    "Thanks! Could you give me a concrete example?",
    "That helps. What would you do differently for a beginner?",
    "Can you make it shorter, in two sentences?",
    "Interesting. Is there a common mistake to avoid?",
    "What sources would you recommend to learn more?",
]
TEXTS = {"initial_prompt": PROMPTS, "assistant_reply": ASSISTANT_REPLIES, "prompter_reply": PROMPTER_REPLIES}
YES_NO = {"spam", "fails_task", "lang_mismatch", "pii", "not_appropriate", "hate_speech", "sexual_content",
          "moral_judgement", "political_content"}
GOOD_LIKERT = {"quality": (0.5, 0.75, 1.0), "helpfulness": (0.5, 0.75, 1.0), "creativity": (0.25, 0.5, 0.75),
               "humor": (0.0, 0.25, 0.5), "toxicity": (0.0, 0.0, 0.25), "violence": (0.0, 0.0, 0.25)}


def check_loopback(base_url: str) -> str:
    """The base URL without a trailing slash; refuses anything that is not http(s) on loopback."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"--base-url must be http(s)://host:port, got {base_url!r}")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80)}
    except socket.gaierror as error:
        raise SystemExit(f"cannot resolve {parts.hostname!r}: {error}") from None
    if not addresses or not all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses):
        raise SystemExit(f"refusing {base_url!r}: the benchmark only talks to a loopback address "
                         f"({parts.hostname} resolves to {', '.join(sorted(addresses))})")
    return base_url.rstrip("/")


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Stats:
    """Everything the contributors measure, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency = defaultdict(list)        # endpoint -> seconds
        self.sql = defaultdict(list)            # endpoint -> statements per request
        self.submit_by_type = defaultdict(lambda: {"latency": [], "sql": []})
        self.errors = Counter()                 # "endpoint status code" -> count
        self.tasks_by_type = Counter()
        self.submitted_by_type = Counter()
        self.loops = 0
        self.empty_loops = 0

    def record(self, endpoint: str, seconds: float, response: requests.Response | None, task_type: str = ""):
        with self.lock:
            self.latency[endpoint].append(seconds)
            if response is not None and response.headers.get("X-SQL-Count", "").isdigit():
                self.sql[endpoint].append(int(response.headers["X-SQL-Count"]))
                if endpoint == "submit":
                    self.submit_by_type[task_type]["sql"].append(int(response.headers["X-SQL-Count"]))
            if endpoint == "submit":
                self.submit_by_type[task_type]["latency"].append(seconds)

    def error(self, endpoint: str, status: int | str, code: str):
        with self.lock:
            self.errors[f"{endpoint} {status} {code}"] += 1


def error_code(response: requests.Response) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return ""


class Contributor:
    """One simulated contributor: a requests.Session with its token, looping until the deadline."""

    def __init__(self, number: int, token: str, base_url: str, lang: str, stats: Stats, timeout: float, seed: int):
        self.number = number
        self.base_url = base_url
        self.lang = lang
        self.stats = stats
        self.timeout = timeout
        self.rng = random.Random(seed)
        self.counter = 0
        self.run_tag = f"{random.getrandbits(32):08x}"  # the server refuses a repeated text for 120 min
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies from the environment: talk to the base URL only
        self.session.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})

    def call(self, endpoint: str, path: str, body: dict | None = None, task_type: str = ""):
        """POST and record latency and SQL count; returns the response, or None on a connection error."""
        start = time.perf_counter()
        try:
            response = self.session.post(self.base_url + path, json=body, timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as error:
            self.stats.error(endpoint, "connection", type(error).__name__)
            return None
        self.stats.record(endpoint, time.perf_counter() - start, response, task_type)
        return response

    def loop_once(self, task_type: str = "random") -> bool:
        """One request -> ack -> submit; True when a submission was accepted."""
        response = self.call("request", "/api/v1/tasks/", {"type": task_type, "lang": self.lang})
        if response is None:
            time.sleep(ERROR_PAUSE)
            return False
        if response.status_code == 404 and error_code(response) == "no_task":
            with self.stats.lock:
                self.stats.empty_loops += 1
            time.sleep(NO_TASK_PAUSE)
            return False
        if response.status_code != 201:
            self.stats.error("request", response.status_code, error_code(response))
            time.sleep(ERROR_PAUSE)
            return False
        task = response.json()
        with self.stats.lock:
            self.stats.tasks_by_type[task["type"]] += 1
        response = self.call("ack", f"/api/v1/tasks/{task['id']}/ack/")
        if response is None or response.status_code != 200:
            if response is not None:
                self.stats.error("ack", response.status_code, error_code(response))
            self.skip(task)
            return False
        response = self.call("submit", f"/api/v1/tasks/{task['id']}/submit/", self.answer(task), task["type"])
        if response is None or response.status_code != 201:
            if response is not None:
                self.stats.error("submit", response.status_code, error_code(response))
            self.skip(task)  # a real front end lets the user skip a task it could not submit
            return False
        with self.stats.lock:
            self.stats.submitted_by_type[task["type"]] += 1
        return True

    def skip(self, task: dict):
        response = self.call("nack", f"/api/v1/tasks/{task['id']}/nack/", {"reason": "bench: submit failed"})
        if response is not None and response.status_code != 200:
            self.stats.error("nack", response.status_code, error_code(response))

    def answer(self, task: dict) -> dict:
        kind = task["type"]
        if kind in TEXTS:
            self.counter += 1
            text = f"{self.rng.choice(TEXTS[kind])} (bench {self.run_tag}, contributor {self.number}, #{self.counter})"
            return {"text": text, "client_id": f"bench-{self.number}-{self.counter}-{self.rng.getrandbits(32):x}"}
        if kind.startswith("rank_"):
            ids = [reply["id"] for reply in task.get("reply_messages") or []]
            self.rng.shuffle(ids)
            return {"ranking": ids}
        if kind.startswith("label_"):
            return {"labels": self.labels(task)}
        return {}

    def labels(self, task: dict) -> dict:
        """Mostly good values (so that most messages are accepted), now and then a spam flag."""
        names = set(task.get("valid_labels") or []) | set(task.get("mandatory_labels") or [])
        labels = {}
        for name in sorted(names):
            if name == "spam":
                labels[name] = 1 if self.rng.random() < 0.05 else 0
            elif name in YES_NO:
                labels[name] = 1 if self.rng.random() < 0.02 else 0
            else:
                labels[name] = self.rng.choice(GOOD_LIKERT.get(name, (0.0, 0.25, 0.5, 0.75, 1.0)))
        return labels

    def run_until(self, deadline: float):
        while time.monotonic() < deadline:
            if self.loop_once():
                with self.stats.lock:
                    self.stats.loops += 1


def one_user_burst(token: str, base_url: str, lang: str, requests_at_once: int, pending_cap: int,
                   timeout: float) -> dict:
    """One user sends `requests_at_once` task requests released together (one session each, as many
    tabs or scripts would) and keeps the tasks open; returns what came back and what went wrong."""
    barrier = threading.Barrier(requests_at_once)
    responses: list = [None] * requests_at_once

    def send(index: int):
        session = requests.Session()
        session.trust_env = False
        session.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})
        try:
            barrier.wait()
            responses[index] = session.post(base_url + "/api/v1/tasks/", json={"type": "random", "lang": lang},
                                            timeout=timeout, allow_redirects=False)
        except requests.RequestException as error:
            responses[index] = error
        finally:
            session.close()

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(requests_at_once)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 10)
    outcomes = Counter()
    items = Counter()
    for response in responses:
        if not isinstance(response, requests.Response):
            outcomes[f"connection {type(response).__name__}"] += 1
        elif response.status_code == 201:
            outcomes["201"] += 1
            item = response.json().get("message_id")
            if item:
                items[item] += 1
        else:
            outcomes[f"{response.status_code} {error_code(response)}"] += 1
    violations = []
    if outcomes["201"] > pending_cap:
        violations.append(f"{outcomes['201']} tasks handed out against a pending cap of {pending_cap}")
    violations += [f"item {item} handed out {n} times" for item, n in items.items() if n > 1]
    expected = {"201", "429 too_many_pending_tasks", "404 no_task"}
    violations += [f"{n} x {outcome}" for outcome, n in outcomes.items() if outcome not in expected]
    return {"requests": requests_at_once, "pending_cap": pending_cap, "outcomes": dict(outcomes.most_common()),
            "violations": violations}


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


CPU_GROUPS = ("server", "postgres", "celery", "redis", "client", "other")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) every process on this machine has used so far, by group: the server
    (gunicorn), PostgreSQL, Celery, Redis, this client, and everything else. The server's and PostgreSQL's
    exited processes (a backend per connection, a restarted worker) count through their parents' totals
    of reaped children. Linux only: {} elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    groups = dict.fromkeys(CPU_GROUPS, 0.0)
    try:
        pids = [pid for pid in os.listdir("/proc") if pid.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat_file:
                stat = stat_file.read()
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline_file:
                cmdline = cmdline_file.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        utime, stime, cutime, cstime = (int(value) for value in stat[stat.rindex(")") + 2:].split()[11:15])
        children = cutime + cstime
        if int(pid) == os.getpid():
            group, children = "client", 0
        elif "gunicorn" in cmdline:
            group = "server"
        elif name == "postgres" or cmdline.startswith("postgres:") or "/postgresql/" in cmdline:
            group = "postgres"
        elif "celery" in cmdline:
            group, children = "celery", 0
        elif name.startswith("redis"):
            group, children = "redis", 0
        else:
            group, children = "other", 0
        groups[group] += (utime + stime + children) / tick
    return groups


def cpu_per_loop(before: dict[str, float], after: dict[str, float], loops: int) -> dict:
    """CPU milliseconds per completed loop, by group, between two cpu_seconds() readings."""
    if not before or not after or not loops:
        return {}
    used = {group: after[group] - before[group] for group in CPU_GROUPS}
    return {"ms_per_loop": {group: round(1000 * seconds / loops, 2) for group, seconds in used.items()},
            "seconds": {group: round(seconds, 2) for group, seconds in used.items()}}


def summary(stats: Stats, elapsed: float) -> dict:
    def describe(latencies: list[float], sql: list[int]) -> dict:
        ordered = sorted(latencies)
        ms = {f"p{p}_ms": round(percentile(ordered, p) * 1000, 1) if ordered else None for p in (50, 95, 99)}
        return {"requests": len(latencies), **ms,
                "sql_mean": round(sum(sql) / len(sql), 2) if sql else None, "sql_max": max(sql) if sql else None}

    all_sql = [n for endpoint in ENDPOINTS for n in stats.sql[endpoint]]
    return {
        "elapsed_s": round(elapsed, 2),
        "loops": stats.loops,
        "loops_per_s": round(stats.loops / elapsed, 1) if elapsed else 0.0,
        "empty_loops": stats.empty_loops,
        "endpoints": {endpoint: describe(stats.latency[endpoint], stats.sql[endpoint])
                      for endpoint in ENDPOINTS if stats.latency[endpoint]},
        "sql_per_request_mean": round(sum(all_sql) / len(all_sql), 2) if all_sql else None,
        "sql_per_request_max": max(all_sql) if all_sql else None,
        "errors": dict(stats.errors.most_common()),
        "error_count": sum(stats.errors.values()),
        "tasks_by_type": dict(stats.tasks_by_type.most_common()),
        "submitted_by_type": dict(stats.submitted_by_type.most_common()),
        "submit_by_type": {kind: describe(values["latency"], values["sql"])
                           for kind, values in sorted(stats.submit_by_type.items())},
    }


def print_table(result: dict):
    def cell(value) -> str:
        return "-" if value is None else str(value)

    print(f"\n{result['loops']} loops in {result['elapsed_s']} s: {result['loops_per_s']} loops/s "
          f"({result['empty_loops']} empty loops, {result['error_count']} errors)")
    print(f"\n{'endpoint':<30}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'SQL mean':>10}{'SQL max':>9}")
    rows = [(name, figures) for name, figures in result["endpoints"].items()]
    rows += [(f"submit {kind}", figures) for kind, figures in result["submit_by_type"].items()]
    for name, figures in rows:
        print(f"{name:<30}{figures['requests']:>9}{cell(figures['p50_ms']):>9}{cell(figures['p95_ms']):>9}"
              f"{cell(figures['p99_ms']):>9}{cell(figures['sql_mean']):>10}{cell(figures['sql_max']):>9}")
    print(f"{'all requests':<30}{'':>36}{cell(result['sql_per_request_mean']):>10}"
          f"{cell(result['sql_per_request_max']):>9}")
    print("\ntasks by type (handed out / submitted):")
    for kind, count in result["tasks_by_type"].items():
        print(f"  {kind:<28}{count:>7}{result['submitted_by_type'].get(kind, 0):>7}")
    cpu = result.get("cpu", {}).get("ms_per_loop")
    if cpu:
        print("\nCPU ms per loop: " + ", ".join(f"{group} {ms}" for group, ms in cpu.items())
              + f" (total {round(sum(cpu.values()), 1)})")
    print("\nerrors (endpoint status code):" + ("" if result["errors"] else " none"))
    for key, count in result["errors"].items():
        print(f"  {key:<50}{count:>7}")
    burst = result.get("burst")
    if burst:
        outcomes = ", ".join(f"{n} x {outcome}" for outcome, n in burst["outcomes"].items())
        print(f"\none user, {burst['requests']} requests at once (pending cap {burst['pending_cap']}): {outcomes}")
        print("  violations: " + ("; ".join(burst["violations"]) or "none"))


def seed_finished_trees(trees: int) -> None:
    """Seed the server's database (DATABASE_URL) with finished trees, in a separate process: this
    script talks to the server only over HTTP and does not load the project."""
    script = Path(__file__).resolve().parent / "seed_finished_trees.py"
    print(f"seeding {trees} finished trees into DATABASE_URL ...", flush=True)
    if subprocess.run([sys.executable, str(script), "--trees", str(trees)]).returncode:
        raise SystemExit("seeding the finished trees failed (see above); nothing was measured")


def warmup(contributors: list[Contributor], prompts: int):
    """Write some prompts through the API (not measured) so that the queue has work from the start."""
    made = 0
    for i in range(prompts):
        made += contributors[i % len(contributors)].loop_once("initial_prompt")
    print(f"warm-up: {made} of {prompts} prompts written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8010", help="server to load (loopback only)")
    parser.add_argument("--tokens", required=True, help="JSON list of API tokens, one per contributor")
    parser.add_argument("--concurrency", "-n", type=int, default=32, help="simulated contributors")
    parser.add_argument("--duration", type=float, default=60, help="seconds to run")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--warmup-prompts", type=int, default=0, help="prompts to write first (not measured)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per HTTP request")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the answers and label values")
    parser.add_argument("--burst", type=int, default=0,
                        help="halfway, one more user sends this many task requests at once (0: none)")
    parser.add_argument("--pending-cap", type=int, default=8,
                        help="the server's OASST_MAX_PENDING_TASKS_PER_USER, which the burst must not pass")
    parser.add_argument("--seed-finished-trees", type=int, default=0, metavar="N",
                        help="first seed N finished trees (10 messages each) into DATABASE_URL, the server's "
                             "PostgreSQL database (0: none)")
    parser.add_argument("--commit", help="server code version to record (default: this checkout's git commit)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "task_loop.json"))
    args = parser.parse_args(argv)

    base_url = check_loopback(args.base_url)
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be between 0 and 3600 seconds")
    tokens = json.loads(Path(args.tokens).read_text())
    if not isinstance(tokens, list) or len(tokens) < args.concurrency or args.concurrency < 1:
        parser.error(f"--tokens must hold at least --concurrency ({args.concurrency}) tokens")
    if args.burst < 0 or (args.burst and len(tokens) <= args.concurrency):
        parser.error(f"--burst needs a token beyond the contributors' ({args.concurrency} + 1)")
    if args.seed_finished_trees < 0:
        parser.error("--seed-finished-trees must be 0 or more")
    if args.seed_finished_trees and not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        parser.error("--seed-finished-trees needs DATABASE_URL set to the server's PostgreSQL database")
    if args.seed_finished_trees:
        seed_finished_trees(args.seed_finished_trees)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    stats = Stats()
    contributors = [Contributor(i + 1, tokens[i], base_url, args.lang, stats, args.timeout, seed + i)
                    for i in range(args.concurrency)]
    if args.warmup_prompts:
        warmup(contributors, args.warmup_prompts)
        stats = Stats()  # the warm-up is not measured
        for contributor in contributors:
            contributor.stats = stats

    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the figures
    print(f"{args.concurrency} contributors for {args.duration:g} s against {base_url} ...", flush=True)
    started_at = datetime.now(UTC)
    cpu_before = cpu_seconds()
    start = time.monotonic()
    deadline = start + args.duration
    threads = [threading.Thread(target=c.run_until, args=(deadline,), daemon=True) for c in contributors]
    for thread in threads:
        thread.start()
    burst = None
    if args.burst:
        time.sleep(args.duration / 2)
        burst = one_user_burst(tokens[args.concurrency], base_url, args.lang, args.burst, args.pending_cap,
                               args.timeout)
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + args.timeout + 5)
    elapsed = time.monotonic() - start
    cpu = cpu_per_loop(cpu_before, cpu_seconds(), stats.loops)

    result = {
        "parameters": {"base_url": base_url, "concurrency": args.concurrency, "duration_s": args.duration,
                       "lang": args.lang, "warmup_prompts": args.warmup_prompts, "seed": seed,
                       "burst": args.burst, "pending_cap": args.pending_cap,
                       "seed_finished_trees": args.seed_finished_trees},
        "date": started_at.isoformat(timespec="seconds"),
        "commit": args.commit or git_commit(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()]},
        **summary(stats, elapsed),
        "cpu": cpu,
        **({"burst": burst} if burst else {}),
    }
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 1 if burst and burst["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
