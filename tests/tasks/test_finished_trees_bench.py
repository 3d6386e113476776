"""bench/task_loop.py's --seed-finished-trees (issue 19): the switch is checked before anything runs, hands the
count to bench/seed_finished_trees.py, and that script seeds finished trees into PostgreSQL once, reuses them,
refuses a database holding another number, and leaves the tables vacuumed."""

import importlib.util
import json
from pathlib import Path

import pytest
from django.db import connection

from tasks.models import Message, MessageTree, TreeState

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def task_loop():
    return load("task_loop")


@pytest.fixture
def loop_args(tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(["token-1", "token-2"]))
    return ["--base-url", "http://127.0.0.1:9", "--tokens", str(tokens), "--concurrency", "2", "--duration", "1",
            "--out", str(tmp_path / "result.json")]


@pytest.fixture
def no_subprocess_or_requests(task_loop, monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("nothing may run before the arguments are checked")

    monkeypatch.setattr(task_loop.subprocess, "run", refuse)
    monkeypatch.setattr(task_loop.requests.Session, "post", refuse)
    return calls


@pytest.mark.parametrize("database_url", [None, "sqlite:////tmp/db.sqlite3"])
def test_the_seed_switch_without_a_postgresql_database_url_is_refused(task_loop, loop_args, monkeypatch, capsys,
                                                                      no_subprocess_or_requests, database_url):
    if database_url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", database_url)
    with pytest.raises(SystemExit) as exit_info:
        task_loop.main([*loop_args, "--seed-finished-trees", "10"])
    assert exit_info.value.code == 2
    assert "--seed-finished-trees needs DATABASE_URL" in capsys.readouterr().err
    assert no_subprocess_or_requests == []


def test_a_negative_number_of_finished_trees_is_refused(task_loop, loop_args, monkeypatch, capsys,
                                                        no_subprocess_or_requests):
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oasst_bench")
    with pytest.raises(SystemExit) as exit_info:
        task_loop.main([*loop_args, "--seed-finished-trees", "-1"])
    assert exit_info.value.code == 2
    assert "must be 0 or more" in capsys.readouterr().err


def test_the_switch_runs_the_seed_script_first_and_a_failed_seed_measures_nothing(task_loop, loop_args, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oasst_bench")
    commands = []

    class Failed:
        returncode = 1

    def run(command, *args, **kwargs):
        commands.append(command)
        return Failed()

    def no_request(*args, **kwargs):
        raise AssertionError("no request may be sent after a failed seed")

    monkeypatch.setattr(task_loop.subprocess, "run", run)
    monkeypatch.setattr(task_loop.requests.Session, "post", no_request)
    with pytest.raises(SystemExit, match="nothing was measured"):
        task_loop.main([*loop_args, "--seed-finished-trees", "7"])
    assert [command[1:] for command in commands] == [[str(ROOT / "bench" / "seed_finished_trees.py"), "--trees", "7"]]


@pytest.mark.django_db
def test_seeding_on_sqlite_is_refused_and_writes_nothing():
    if connection.vendor == "postgresql":
        pytest.skip("the refusal is SQLite's")
    with pytest.raises(SystemExit, match="needs PostgreSQL"):
        load("seed_finished_trees").seed_finished_trees(3)
    assert not MessageTree.objects.exists()


@pytest.mark.django_db(transaction=True)  # VACUUM cannot run inside a transaction
def test_finished_trees_are_seeded_once_reused_and_another_number_refused():
    if connection.vendor != "postgresql":
        pytest.skip("COPY, VACUUM and CHECKPOINT need PostgreSQL")
    seeding = load("seed_finished_trees")
    report = seeding.seed_finished_trees(3)
    assert (report["reused"], report["finished_trees"]) == (False, 3)
    assert MessageTree.objects.filter(state=TreeState.READY_FOR_EXPORT).count() == 3
    assert Message.objects.count() == 30
    with connection.cursor() as cursor:
        cursor.execute("SELECT relallvisible FROM pg_class WHERE relname = %s", [Message._meta.db_table])
        assert cursor.fetchone()[0] > 0  # vacuumed: the visibility map is set
    assert seeding.seed_finished_trees(3)["reused"] is True
    with pytest.raises(SystemExit, match="holds 3 seeded trees, not 4"):
        seeding.seed_finished_trees(4)
    assert Message.objects.count() == 30
