"""Does asking where the model is least sure help the ranking queue? A simulation on real trees.

Every parent of an export with two or more replies that carry a consensus rank is a sibling set; its
recorded ranks are the full consensus. Simulated rankers follow it with noise (each reply's utility is
minus its rank plus Gaussian noise of --noise; the ranker orders by utility). The queue hands out one
ranking at a time, each set taking at most --per-set rankings (num_required_rankings), chosen by

- uniform: a random eligible set, as the queue does with the factor off;
- guided: tasks.tree_manager.by_uncertainty over the same random order with the model's closest sibling
  score gap (weight --weight), as the queue does with the factor on.

After every ranking, each set's estimate is the project's consensus (ranked pairs) of the rankings it got,
or the model's score order while it has none (the same rule for both policies); agreement is the mean
Kendall tau of the estimates with the full consensus. Model scores: reply length in characters by
default (the length rule, a stand-in scorer), or reward scores from --scores (JSONL lines with
message_id and reward_score, as the replies' scores in the database). Mean over --repeats seeds.

    python bench/active_ranking.py [--data ../shared/data/oasst_en_100_trees.jsonl] [--data export.jsonl]
        [--scores scores.jsonl] [--noise 1.5] [--weight 10] [--repeats 50]

Prints a table; writes bench/results/active_ranking.json and docs/images/active_ranking.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")

import django  # noqa: E402

django.setup()

from ranking.consensus import kendall_tau, ranked_pairs  # noqa: E402
from tasks.tree_manager import Candidate, Pool, by_uncertainty  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "oasst_en_100_trees.jsonl"
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def git_commit() -> str | None:
    """The short commit, with ``+dirty`` when tracked files have uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def sibling_sets(paths: list[Path], scores: dict | None) -> list[dict]:
    """[{"consensus": [ids best first], "score": {id: model score}}] for every parent with 2+ ranked replies
    (and, with --scores, a score for each of them)."""
    sets = []

    def walk(node: dict) -> None:
        ranked = [r for r in node.get("replies", []) if r.get("rank") is not None and not r.get("deleted")]
        if scores is not None:
            ranked = [r for r in ranked if r["message_id"] in scores]
        if len(ranked) >= 2:
            ranked.sort(key=lambda r: r["rank"])
            sets.append({"consensus": [r["message_id"] for r in ranked],
                         "score": {r["message_id"]: (scores[r["message_id"]] if scores is not None
                                                     else float(len(r["text"]))) for r in ranked}})
        for reply in node.get("replies", []):
            walk(reply)

    for path in paths:
        with path.open() as lines:
            for line in lines:
                if line.strip():
                    walk(json.loads(line)["prompt"])
    return sets


def read_scores(path: Path) -> dict:
    with path.open() as lines:
        return {row["message_id"]: float(row["reward_score"]) for row in map(json.loads, lines)
                if row.get("reward_score") is not None}


def closest_gap(score: dict) -> float:
    values = sorted(score.values())
    return min(b - a for a, b in zip(values, values[1:], strict=False))


def noisy_ranking(consensus: list, noise: float, rng: random.Random) -> list:
    utility = {item: -place + rng.gauss(0, noise) for place, item in enumerate(consensus)}
    return sorted(consensus, key=lambda item: -utility[item])


def agreement_curve(sets: list[dict], *, guided: bool, per_set: int, noise: float, weight: float,
                    seed: int) -> list[float]:
    """Mean tau with the full consensus after 0, 1, ..., per_set * len(sets) rankings."""
    rng = random.Random(seed)
    given: list[list] = [[] for _ in sets]
    model_order = [sorted(s["consensus"], key=lambda item, s=s: -s["score"][item]) for s in sets]
    taus = [kendall_tau(order, s["consensus"]) for order, s in zip(model_order, sets, strict=True)]
    candidates = [Candidate(pool=Pool.RANKING, message_id=i, score_gap=closest_gap(s["score"]))
                  for i, s in enumerate(sets)]
    curve = [sum(taus) / len(taus)]
    for _ in range(per_set * len(sets)):
        eligible = [c for c in candidates if len(given[c.message_id]) < per_set]
        rng.shuffle(eligible)  # the queue's random order
        chosen = (by_uncertainty(eligible, weight) if guided else eligible)[0].message_id
        given[chosen].append(noisy_ranking(sets[chosen]["consensus"], noise, rng))
        taus[chosen] = kendall_tau(ranked_pairs(given[chosen]), sets[chosen]["consensus"])
        curve.append(sum(taus) / len(taus))
    return curve


def mean_curve(curves: list[list[float]]) -> list[float]:
    return [sum(values) / len(values) for values in zip(*curves, strict=True)]


def needed(curve: list[float], target: float) -> int | None:
    """The fewest rankings after which the curve reaches the target."""
    return next((n for n, tau in enumerate(curve) if tau >= target - 1e-12), None)


def plot(uniform: list[float], guided: list[float], path: Path, title: str) -> None:
    import matplotlib  # heavy: only to draw the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: only to draw the figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(range(len(uniform)), uniform, label="uniform choice")
    ax.plot(range(len(guided)), guided, label="model-guided choice")
    ax.set_xlabel("rankings given")
    ax.set_ylabel("mean Kendall tau with the full consensus")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", help="export file(s) of trees (JSONL)")
    parser.add_argument("--scores", type=Path, help="JSONL of message_id and reward_score (default: reply length)")
    parser.add_argument("--noise", type=float, default=1.5, help="ranker noise (Gaussian sd on rank utilities)")
    parser.add_argument("--weight", type=float, default=10.0, help="weight_ranking_uncertainty of the guided queue")
    parser.add_argument("--per-set", type=int, default=3, help="rankings per sibling set (num_required_rankings)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "active_ranking.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "active_ranking.png")
    options = parser.parse_args()
    paths = options.data or [DEFAULT_DATA]
    scores = read_scores(options.scores) if options.scores else None
    scorer = f"reward_score from {options.scores}" if options.scores else "reply length (stand-in scorer)"
    sets = sibling_sets(paths, scores)
    if not sets:
        sys.exit("No sibling set with two or more ranked (and scored) replies in the data.")

    load_before, started = os.getloadavg(), time.perf_counter()
    runs = {name: mean_curve([agreement_curve(sets, guided=name == "guided", per_set=options.per_set,
                                              noise=options.noise, weight=options.weight, seed=seed)
                              for seed in range(options.repeats)])
            for name in ("uniform", "guided")}
    seconds = time.perf_counter() - started
    budget = options.per_set * len(sets)
    rows = []
    for fraction in FRACTIONS:
        n = round(fraction * budget)
        target = runs["uniform"][n]
        rows.append({"budget": n, "uniform_tau": round(target, 4), "guided_tau": round(runs["guided"][n], 4),
                     "guided_rankings_to_reach_uniform": needed(runs["guided"], target)})

    print(f"{len(sets)} sibling sets from {', '.join(map(str, paths))}; model scores: {scorer}; "
          f"ranker noise {options.noise}; guided weight {options.weight}; {options.repeats} seeds; {seconds:.1f} s")
    print(f"model order alone (no ranking): tau {runs['uniform'][0]:.3f}")
    print(f"{'rankings':>9} {'uniform tau':>12} {'guided tau':>11} {'guided needs':>13}")
    for row in rows:
        print(f"{row['budget']:>9} {row['uniform_tau']:>12.4f} {row['guided_tau']:>11.4f} "
              f"{row['guided_rankings_to_reach_uniform']!s:>13}")

    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_before": load_before,
                          "load_after": os.getloadavg()},
              "data": [str(p) for p in paths], "scorer": scorer, "sets": len(sets), "noise": options.noise,
              "weight": options.weight, "per_set": options.per_set, "repeats": options.repeats,
              "seconds": round(seconds, 1), "model_order_tau": round(runs["uniform"][0], 4), "table": rows,
              "curves": {name: [round(v, 4) for v in curve] for name, curve in runs.items()}}
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(runs["uniform"], runs["guided"], options.figure,
         f"{len(sets)} sibling sets, scorer: {scorer}, noise {options.noise}")
    print(f"wrote {options.out} and {options.figure}")


if __name__ == "__main__":
    main()
