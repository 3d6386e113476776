"""Pairwise evaluation of a reward model that cannot be misread: accuracy with 95% intervals, beside the
length rule and a coin on the same pairs. Pure functions over plain data: no model, no files, no database.

A pair counts 1 when the better reply scores higher, 0 when it scores lower and 1/2 on a tie (for the model
and for the length rule alike: a rule that cannot tell two replies apart is a coin on that pair). Rewards
within ``SCORE_TIE`` of each other tie: closer than that, float noise decides.

Intervals (95%). Every accuracy carries two:

- ``wilson``: the Wilson score interval, which treats the pairs as independent draws;
- ``tree_bootstrap``: a percentile bootstrap that resamples whole trees with replacement (a seeded generator,
  so the same pairs give the same interval). Pairs of one tree share a conversation and their replies (a
  group of 5 replies gives 10 pairs), so they are not independent and Wilson is too narrow; with few trees,
  though, the bootstrap sees too little variety and is too narrow itself.

``interval`` is the envelope of the two (the lower of the lows, the higher of the highs): the honest headline
whichever assumption fails. Pairs without a tree (a pair file) are each their own tree.

Baselines on the same pairs: ``length_rule`` ("the longer reply wins", length in characters, with its own
intervals) and ``random``: a fair coin, given as its expectation 0.5 and the range its accuracy falls in 95%
of the time on that many pairs (0.5 +- 1.96 * 0.5 / sqrt(n)), deterministic rather than one seeded draw. Coin
flips are independent whatever the trees, so this range needs no bootstrap. ``model_minus_length_rule`` is the
difference of the two accuracies with a paired bootstrap over trees (model and rule resampled on the same
trees): the interval that says whether the model beats the rule.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from training.data import PreferencePair

Z95 = 1.959963984540054
RESAMPLES = 2000
# Two rewards this close are a tie: padding a batch to another width moves a score by about 1e-7, and a
# comparison that such noise can flip would make the accuracy depend on the batch size.
SCORE_TIE = 1e-5
EVALUATION_SEED = 0


@dataclass(frozen=True)
class ScoredPair:
    """One preference pair with the scores a model gave its replies and the replies' lengths in characters."""

    tree_id: str
    lang: str
    rank_gap: int
    chosen_score: float
    rejected_score: float
    chosen_length: int
    rejected_length: int


def outcome(better: float, worse: float, *, tie: float = 0.0) -> float:
    """1 when the better reply is ahead by more than ``tie``, 0 when behind by more, 1/2 otherwise."""
    if better - worse > tie:
        return 1.0
    if worse - better > tie:
        return 0.0
    return 0.5


def model_outcomes(pairs: Sequence[ScoredPair]) -> list[float]:
    return [outcome(pair.chosen_score, pair.rejected_score, tie=SCORE_TIE) for pair in pairs]


def length_rule_outcomes(pairs: Sequence[ScoredPair]) -> list[float]:
    return [outcome(pair.chosen_length, pair.rejected_length) for pair in pairs]


def wilson_interval(correct: float, n: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / n`` (``correct`` may hold halves from ties)."""
    if n <= 0:
        raise ValueError("an interval needs at least one pair")
    share = correct / n
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    # the interval always holds the share; min/max only undo rounding at 0 and 1
    return max(0.0, min(share, centre - half_width)), min(1.0, max(share, centre + half_width))


def coin_interval(n: int, *, z: float = Z95) -> tuple[float, float]:
    """Where a fair coin's accuracy on n independent pairs falls 95% of the time (normal approximation)."""
    if n <= 0:
        raise ValueError("an interval needs at least one pair")
    half_width = z * 0.5 / math.sqrt(n)
    return max(0.0, 0.5 - half_width), min(1.0, 0.5 + half_width)


def tree_bootstrap_interval(
    tree_ids: Sequence[str], values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = EVALUATION_SEED
) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values`` when whole trees are resampled with replacement."""
    import numpy as np

    if not values:
        raise ValueError("an interval needs at least one pair")
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for tree_id, value in zip(tree_ids, values, strict=True):
        sums[tree_id] += value
        counts[tree_id] += 1
    order = sorted(sums)
    tree_sums = np.array([sums[tree] for tree in order])
    tree_counts = np.array([counts[tree] for tree in order], dtype=float)
    generator = np.random.default_rng(seed)
    means = []
    chunk = max(1, 2_000_000 // len(order))  # bounds memory: chunk x trees indices at a time
    for start in range(0, resamples, chunk):
        picks = generator.integers(0, len(order), size=(min(chunk, resamples - start), len(order)))
        means.append(tree_sums[picks].sum(axis=1) / tree_counts[picks].sum(axis=1))
    low, high = np.quantile(np.concatenate(means), [0.025, 0.975])
    return float(low), float(high)


def _rounded(interval: tuple[float, float]) -> list[float]:
    return [round(interval[0], 4), round(interval[1], 4)]


def accuracy_with_intervals(
    tree_ids: Sequence[str], outcomes: Sequence[float], *, resamples: int = RESAMPLES, seed: int = EVALUATION_SEED
) -> dict:
    """Accuracy, its Wilson and tree-bootstrap intervals and their envelope (``interval``)."""
    n = len(outcomes)
    if n == 0:
        return {"accuracy": None, "pairs": 0, "trees": 0}
    accuracy = sum(outcomes) / n
    wilson = wilson_interval(sum(outcomes), n)
    bootstrap = tree_bootstrap_interval(tree_ids, outcomes, resamples=resamples, seed=seed)
    envelope = (min(wilson[0], bootstrap[0], accuracy), max(wilson[1], bootstrap[1], accuracy))
    return {
        "accuracy": round(accuracy, 4),
        "pairs": n,
        "trees": len(set(tree_ids)),
        "interval": _rounded(envelope),
        "wilson": _rounded(wilson),
        "tree_bootstrap": _rounded(bootstrap),
    }


def _summary(pairs: Sequence[ScoredPair], *, resamples: int, seed: int) -> dict:
    """The model's accuracy with intervals and the length rule's on the same pairs."""
    trees = [pair.tree_id for pair in pairs]
    row = accuracy_with_intervals(trees, model_outcomes(pairs), resamples=resamples, seed=seed)
    if pairs:
        rule = accuracy_with_intervals(trees, length_rule_outcomes(pairs), resamples=resamples, seed=seed)
        row["length_rule"] = {key: rule[key] for key in ("accuracy", "interval", "wilson", "tree_bootstrap")}
    return row


def _grouped(
    pairs: Sequence[ScoredPair], key: Callable[[ScoredPair], str], *, resamples: int, seed: int
) -> dict[str, dict]:
    groups: dict[str, list[ScoredPair]] = defaultdict(list)
    for pair in pairs:
        groups[key(pair)].append(pair)
    ordered = sorted(groups, key=lambda name: (len(name), name))  # rank gaps 1, 2, ..., 10 in numeric order
    return {name: _summary(groups[name], resamples=resamples, seed=seed) for name in ordered}


def difference_interval(
    pairs: Sequence[ScoredPair], *, resamples: int = RESAMPLES, seed: int = EVALUATION_SEED
) -> dict:
    """Model accuracy minus length-rule accuracy on the same pairs, with a paired tree-bootstrap 95% interval."""
    differences = [
        model - rule for model, rule in zip(model_outcomes(pairs), length_rule_outcomes(pairs), strict=True)
    ]
    low, high = tree_bootstrap_interval([pair.tree_id for pair in pairs], differences, resamples=resamples, seed=seed)
    difference = sum(differences) / len(differences)
    return {"difference": round(difference, 4), "interval": _rounded((min(low, difference), max(high, difference)))}


def evaluate_scored_pairs(
    pairs: Sequence[ScoredPair], *, resamples: int = RESAMPLES, seed: int = EVALUATION_SEED
) -> dict:
    """Everything a reader needs to judge a reward model on these pairs (see the module docstring).

    Keys: accuracy, pairs, trees, interval, wilson, tree_bootstrap, length_rule, random,
    model_minus_length_rule, by_language and by_rank_gap (each row: accuracy, pairs, trees, intervals and the
    length rule on that row's pairs), resamples and seed. Without pairs: ``{"accuracy": None, "pairs": 0}``.
    """
    if not pairs:
        return empty_evaluation()
    evaluation = _summary(pairs, resamples=resamples, seed=seed)
    evaluation["random"] = {"accuracy": 0.5, "interval": _rounded(coin_interval(len(pairs)))}
    evaluation["model_minus_length_rule"] = difference_interval(pairs, resamples=resamples, seed=seed)
    evaluation["by_language"] = _grouped(pairs, lambda pair: pair.lang, resamples=resamples, seed=seed)
    evaluation["by_rank_gap"] = _grouped(pairs, lambda pair: str(pair.rank_gap), resamples=resamples, seed=seed)
    evaluation["resamples"] = resamples
    evaluation["seed"] = seed
    return evaluation


def empty_evaluation() -> dict:
    return {"accuracy": None, "pairs": 0, "trees": 0}


def scored_pairs(
    pairs: Sequence[PreferencePair], chosen_scores: Sequence[float], rejected_scores: Sequence[float]
) -> list[ScoredPair]:
    return [
        ScoredPair(
            tree_id=pair.tree_id or f"pair {index}",  # a pair from a pair file is a tree of its own
            lang=pair.lang,
            rank_gap=pair.rank_gap,
            chosen_score=float(chosen),
            rejected_score=float(rejected),
            chosen_length=len(pair.chosen),
            rejected_length=len(pair.rejected),
        )
        for index, (pair, chosen, rejected) in enumerate(zip(pairs, chosen_scores, rejected_scores, strict=True))
    ]


def evaluate_preference_pairs(
    pairs: Sequence[PreferencePair],
    chosen_scores: Sequence[float],
    rejected_scores: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    seed: int = EVALUATION_SEED,
) -> dict:
    """``evaluate_scored_pairs`` of preference pairs and the scores of their better and worse replies."""
    return evaluate_scored_pairs(scored_pairs(pairs, chosen_scores, rejected_scores), resamples=resamples, seed=seed)
