"""Fault tests: stop, restart or kill the real services and processes the suite runs against.

They act on whatever the suite uses: the PostgreSQL cluster serving DATABASE_URL's port (found
with `pg_lsclusters`, controlled with `pg_ctlcluster`) and the Redis server at REDIS_URL's port.
Other setups name their own commands (run by the shell; `{port}` is replaced):

    OASST_FAULTS_PG_RESTART   default: pg_ctlcluster --skip-systemctl-redirect <version> <cluster> restart
    OASST_FAULTS_PG_START     default: pg_ctlcluster --skip-systemctl-redirect <version> <cluster> start
    OASST_FAULTS_REDIS_STOP   default: redis-cli -h <host> -p {port} shutdown nosave
    OASST_FAULTS_REDIS_START  default: redis-server --daemonize yes --bind <host> --port {port}
                                       --save "" --appendonly no (as .ci/run starts it)

Every test gives back the service it stopped, also when it fails (fixture finalizers).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CELERY = str(Path(sys.executable).with_name("celery"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition, *, timeout: float, interval: float = 0.1, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def shell(command: str, *, timeout: float = 60) -> None:
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout)  # noqa: S602
    if result.returncode != 0:
        raise RuntimeError(f"{command!r} failed ({result.returncode}): {result.stdout}{result.stderr}")


def subprocess_database_url() -> str:
    """DATABASE_URL of the test database the suite is using (a subprocess must see the same rows)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
    env.update(extra)
    return env


# --- PostgreSQL ---------------------------------------------------------------------------------


@dataclass
class Postgres:
    host: str
    port: int
    restart_command: str
    start_command: str

    def answers(self) -> bool:
        return port_open(self.host, self.port)

    def restart(self) -> None:
        shell(self.restart_command)
        wait_until(self.answers, timeout=30, what=f"PostgreSQL on port {self.port}")
        connection.close()  # the test's own connection died with the server

    def ensure_running(self) -> None:
        if not self.answers():
            shell(self.start_command)
            wait_until(self.answers, timeout=30, what=f"PostgreSQL on port {self.port}")


def _cluster_command(port: int, action: str) -> str | None:
    lsclusters = shutil.which("pg_lsclusters")
    if not lsclusters or not shutil.which("pg_ctlcluster"):
        return None
    listing = subprocess.run([lsclusters, "--no-header"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        version, cluster, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return f"pg_ctlcluster --skip-systemctl-redirect {version} {cluster} {action}"
    return None


@pytest.fixture
def postgres() -> Postgres:
    """The PostgreSQL server of the test database; running again after the test, whatever happened."""
    host, port = connection.settings_dict["HOST"] or "127.0.0.1", int(connection.settings_dict["PORT"] or 5432)
    restart = os.environ.get("OASST_FAULTS_PG_RESTART") or _cluster_command(port, "restart")
    start = os.environ.get("OASST_FAULTS_PG_START") or _cluster_command(port, "start")
    if not restart or not start:
        pytest.skip(f"no way to restart the PostgreSQL on port {port}: set OASST_FAULTS_PG_RESTART and _START")
    server = Postgres(host, port, restart.replace("{port}", str(port)), start.replace("{port}", str(port)))
    yield server
    server.ensure_running()
    connection.close()  # the test's own connection died with the restart


# --- Redis --------------------------------------------------------------------------------------


@dataclass
class Redis:
    host: str
    port: int
    db: int
    stop_command: str
    start_command: str

    def answers(self) -> bool:
        return port_open(self.host, self.port)

    def stop(self) -> None:
        shell(self.stop_command)
        wait_until(lambda: not self.answers(), timeout=10, what=f"Redis on port {self.port} to stop")

    def start(self) -> None:
        shell(self.start_command)
        wait_until(self.answers, timeout=10, what=f"Redis on port {self.port}")


@pytest.fixture
def redis_server() -> Redis:
    """The Redis server at REDIS_URL; running again after the test, whatever happened."""
    url = urlsplit(os.environ["REDIS_URL"])
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    db = int(url.path.strip("/") or 0)
    stop = os.environ.get("OASST_FAULTS_REDIS_STOP") or f"redis-cli -h {host} -p {{port}} shutdown nosave"
    start = os.environ.get("OASST_FAULTS_REDIS_START") or (
        f"redis-server --daemonize yes --bind {host} --port {{port}} --save '' --appendonly no")
    if not os.environ.get("OASST_FAULTS_REDIS_START") and not shutil.which("redis-server"):
        pytest.skip("no redis-server to start Redis again: set OASST_FAULTS_REDIS_STOP and _START")
    server = Redis(host, port, db, stop.replace("{port}", str(port)), start.replace("{port}", str(port)))
    yield server
    if not server.answers():
        server.start()


# --- Subprocesses -------------------------------------------------------------------------------


@dataclass
class Process:
    """A subprocess in its own process group, its output collected line by line."""

    popen: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, args: list[str], env: dict[str, str]) -> Process:
        popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
        process = cls(popen)
        threading.Thread(target=process._collect, daemon=True).start()
        return process

    def _collect(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, *, timeout: float) -> None:
        def seen():
            if self.popen.poll() is not None and text not in self.output:
                raise AssertionError(f"the process ended ({self.popen.returncode}) before {text!r}:\n{self.output}")
            return text in self.output

        wait_until(seen, timeout=timeout, what=f"{text!r} in the output of {self.popen.args}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self) -> None:
        """End it and everything it started (the finalizer of every test that starts one)."""
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(timeout=10)
        else:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)  # children left behind by a killed leader
            except ProcessLookupError:
                pass


@pytest.fixture
def processes():
    """Start subprocesses with processes(args, env); all of them end with the test."""
    started: list[Process] = []

    def start(args: list[str], env: dict[str, str]) -> Process:
        process = Process.start(args, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def celery_worker_args(queues: str = "default") -> list[str]:
    return [CELERY, "-A", "oasst", "worker", "--pool", "solo", "--queues", queues, "--loglevel", "INFO",
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "--hostname", f"faults-{uuid.uuid4().hex[:8]}@%h"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

