"""bench/active_ranking.py keeps working: a tiny run on a few real trees, with the length stand-in and with
scores from a file, writes its table, curves and figure; the two policies end on the same budget."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "active_ranking.py"
DATA = ROOT.parent / "shared" / "data" / "oasst_en_100_trees.jsonl"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_active_ranking", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def few_trees(tmp_path):
    if not DATA.exists():
        pytest.skip(f"shared data missing: {DATA}")
    path = tmp_path / "trees.jsonl"
    path.write_text("".join(DATA.read_text().splitlines(keepends=True)[:8]))
    return path


def run(bench, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["active_ranking.py", *map(str, args)])
    bench.main()


def test_a_tiny_run_writes_the_table_curves_and_figure(bench, monkeypatch, tmp_path, few_trees, capsys):
    out, figure = tmp_path / "result.json", tmp_path / "curve.png"
    run(bench, monkeypatch, "--data", few_trees, "--repeats", 2, "--out", out, "--figure", figure)
    result = json.loads(out.read_text())
    sets = len(bench.sibling_sets([few_trees], None))
    assert result["sets"] == sets > 0 and result["scorer"] == "reply length (stand-in scorer)"
    assert result["commit"] and "load_before" in result["machine"]
    for curve in result["curves"].values():
        assert len(curve) == 3 * sets + 1 and curve[0] == result["model_order_tau"]
    assert [row["budget"] for row in result["table"]][-1] == 3 * sets
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert "guided needs" in capsys.readouterr().out


def test_scores_from_a_file_are_used_and_named(bench, monkeypatch, tmp_path, few_trees):
    """Scores that put the consensus order exactly: the model's order alone agrees fully."""
    sets = bench.sibling_sets([few_trees], None)
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"message_id": item, "reward_score": -place}) + "\n"
                              for s in sets for place, item in enumerate(s["consensus"])))
    out = tmp_path / "result.json"
    run(bench, monkeypatch, "--data", few_trees, "--scores", scores, "--repeats", 1, "--out", out,
        "--figure", tmp_path / "curve.png")
    result = json.loads(out.read_text())
    assert result["scorer"] == f"reward_score from {scores}" and result["model_order_tau"] == 1.0


def test_guided_choice_reorders_only(bench, few_trees):
    sets = bench.sibling_sets([few_trees], None)
    for guided in (False, True):
        curve = bench.agreement_curve(sets, guided=guided, per_set=1, noise=0.0, weight=10, seed=0)
        assert curve[-1] == 1.0  # every set ranked once without noise: the full consensus everywhere
