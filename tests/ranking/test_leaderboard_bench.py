"""bench/leaderboard.py keeps working: a tiny run seeds, times and checks a leaderboard on PostgreSQL,
and the script refuses a database it must not touch."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from ranking import scoring
from tests.factories import UserFactory

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "leaderboard.py"
ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_leaderboard", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_tiny_benchmark_run_passes_every_check_and_writes_its_figures(bench, tmp_path):
    out = tmp_path / "leaderboard.json"

    code = bench.main(["--users", "50", "--events", "500", "--seed", "3", "--repeats", "2",
                       "--refresh-sample", "10", "--read-requests", "3", "--out", str(out)])

    result = json.loads(out.read_text())
    assert code == 0
    assert result["verification"]["ok"], result["verification"]
    frames = result["verification"]["frames"]
    assert list(frames) == list(scoring.FRAMES)
    assert 0 < frames["total"]["ranked"] < 50  # some users have no points, the hidden and banned are left out
    assert result["verification"]["hidden_users"] >= 1 and result["verification"]["banned_users"] >= 1
    assert all(len(r["runs_s"]) == 2 and r["ranked"] == frames[f]["ranked"] for f, r in result["rebuild"].items())
    assert result["refresh"]["n"] == 10 and result["refresh"]["p95_ms"] > 0
    assert result["read"]["page_1"]["n"] == 3
    assert result["parameters"]["users"] == 50 and result["seeding_s"]["total"] > 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_benchmark_refuses_a_database_that_already_holds_users(bench):
    UserFactory()

    with pytest.raises(SystemExit, match="already holds 1 users"):
        bench.database_prepare()


@pytest.mark.skipif(ON_POSTGRES, reason="checks the refusal on SQLite")
def test_benchmark_refuses_a_database_that_is_not_postgresql(bench):
    with pytest.raises(SystemExit, match="needs PostgreSQL"):
        bench.database_prepare()
