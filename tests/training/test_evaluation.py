"""The pure pairwise evaluation: outcomes, intervals, baselines and the model-minus-rule difference (no database)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data import PreferencePair, Turn
from training.evaluation import (
    SCORE_TIE,
    ScoredPair,
    accuracy_with_intervals,
    coin_interval,
    evaluate_preference_pairs,
    evaluate_scored_pairs,
    outcome,
    tree_bootstrap_interval,
    wilson_interval,
)

FAST = {"resamples": 200}

scores = st.floats(min_value=-5, max_value=5, allow_nan=False)
lengths = st.integers(min_value=0, max_value=50)
scored_pair = st.builds(
    ScoredPair,
    tree_id=st.sampled_from(["t1", "t2", "t3", "t4", "t5"]),
    lang=st.sampled_from(["en", "de"]),
    rank_gap=st.integers(min_value=1, max_value=4),
    chosen_score=scores,
    rejected_score=scores,
    chosen_length=lengths,
    rejected_length=lengths,
)
pair_lists = st.lists(scored_pair, min_size=1, max_size=40)


def pair(tree="t", chosen=1.0, rejected=0.0, chosen_length=10, rejected_length=5, gap=1, lang="en"):
    return ScoredPair(tree, lang, gap, chosen, rejected, chosen_length, rejected_length)


def inside(interval, value):
    return interval[0] - 1e-9 <= value <= interval[1] + 1e-9


@settings(max_examples=60, deadline=None)
@given(pair_lists)
def test_accuracies_lie_in_zero_one_and_every_interval_holds_its_point(pairs):
    evaluation = evaluate_scored_pairs(pairs, **FAST)
    rows = [evaluation, *evaluation["by_language"].values(), *evaluation["by_rank_gap"].values()]
    for row in rows:
        for figure in (row, row["length_rule"]):
            assert 0 <= figure["accuracy"] <= 1
            for name in ("interval", "wilson"):
                assert 0 <= figure[name][0] <= figure[name][1] <= 1
            assert inside(figure["interval"], figure["accuracy"])
            # the headline interval is the envelope of both
            assert figure["interval"][0] <= min(figure["wilson"][0], figure["tree_bootstrap"][0]) + 1e-9
            assert figure["interval"][1] >= max(figure["wilson"][1], figure["tree_bootstrap"][1]) - 1e-9
    difference = evaluation["model_minus_length_rule"]
    assert difference["difference"] == pytest.approx(
        evaluation["accuracy"] - evaluation["length_rule"]["accuracy"], abs=2e-4
    )
    assert inside(difference["interval"], difference["difference"])
    assert inside(evaluation["random"]["interval"], 0.5)


@settings(max_examples=40, deadline=None)
@given(pair_lists)
def test_the_groups_partition_the_pairs(pairs):
    evaluation = evaluate_scored_pairs(pairs, **FAST)
    assert sum(row["pairs"] for row in evaluation["by_language"].values()) == len(pairs) == evaluation["pairs"]
    assert sum(row["pairs"] for row in evaluation["by_rank_gap"].values()) == len(pairs)
    assert evaluation["trees"] == len({p.tree_id for p in pairs})


@settings(max_examples=40, deadline=None)
@given(pair_lists)
def test_swapping_every_pair_mirrors_the_accuracy(pairs):
    swapped = [
        ScoredPair(p.tree_id, p.lang, p.rank_gap, p.rejected_score, p.chosen_score, p.rejected_length, p.chosen_length)
        for p in pairs
    ]
    forward, backward = evaluate_scored_pairs(pairs, **FAST), evaluate_scored_pairs(swapped, **FAST)
    assert forward["accuracy"] + backward["accuracy"] == pytest.approx(1, abs=2e-4)
    assert forward["length_rule"]["accuracy"] + backward["length_rule"]["accuracy"] == pytest.approx(1, abs=2e-4)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 1)), min_size=1, max_size=30), st.integers(0, 99))
@settings(max_examples=30, deadline=None)
def test_the_tree_bootstrap_is_deterministic_for_a_seed(rows, seed):
    trees, values = zip(*rows, strict=True)
    first = tree_bootstrap_interval(trees, values, resamples=100, seed=seed)
    assert first == tree_bootstrap_interval(trees, values, resamples=100, seed=seed)
    assert min(values) - 1e-9 <= first[0] <= first[1] <= max(values) + 1e-9


def test_a_perfect_scorer_gets_one_and_a_reversed_scorer_zero():
    pairs = [pair(tree=f"t{i // 3}", chosen=2.0, rejected=1.0) for i in range(30)]
    perfect = evaluate_scored_pairs(pairs, **FAST)
    assert perfect["accuracy"] == 1 and perfect["tree_bootstrap"] == [1, 1]
    assert perfect["wilson"][1] == 1 and perfect["wilson"][0] < 1  # 30 pairs cannot prove perfection
    reversed_pairs = [pair(tree=p.tree_id, chosen=0.0, rejected=1.0) for p in pairs]
    assert evaluate_scored_pairs(reversed_pairs, **FAST)["accuracy"] == 0


def test_ties_count_half_for_the_model_and_for_the_length_rule():
    assert (outcome(1, 0), outcome(0, 1), outcome(0.3, 0.3)) == (1.0, 0.0, 0.5)
    pairs = [pair(chosen=1.0, rejected=1.0, chosen_length=7, rejected_length=7), pair(chosen=3.0, rejected=1.0)]
    evaluation = evaluate_scored_pairs(pairs, **FAST)
    assert evaluation["accuracy"] == 0.75
    assert evaluation["length_rule"]["accuracy"] == 0.75


def test_rewards_closer_than_float_noise_tie_so_padding_cannot_flip_a_pair():
    noisy = [pair(chosen=0.25 + 3e-7, rejected=0.25), pair(chosen=0.25, rejected=0.25 + 3e-7)]
    assert evaluate_scored_pairs(noisy, **FAST)["accuracy"] == 0.5
    apart = [pair(chosen=0.25 + 1e-3, rejected=0.25), pair(chosen=0.25, rejected=0.25 + 1e-3)]
    assert [outcome(p.chosen_score, p.rejected_score, tie=SCORE_TIE) for p in apart] == [1.0, 0.0]


def test_the_length_rule_counts_characters_of_the_replies():
    conversation = (Turn("prompter", "a very long question " * 20),)
    pairs = [
        PreferencePair("t1", "en", conversation, chosen="long reply here", rejected="short", rank_gap=1),
        PreferencePair("t2", "en", conversation, chosen="tiny", rejected="a much longer reply", rank_gap=2),
    ]
    evaluation = evaluate_preference_pairs(pairs, [0.0, 1.0], [1.0, 0.0], **FAST)
    assert evaluation["length_rule"]["accuracy"] == 0.5
    assert evaluation["by_rank_gap"]["1"]["length_rule"]["accuracy"] == 1
    assert evaluation["by_rank_gap"]["2"]["length_rule"]["accuracy"] == 0
    assert evaluation["accuracy"] == 0.5 and evaluation["by_rank_gap"]["2"]["accuracy"] == 1


def test_wilson_matches_the_textbook_value_and_narrows_with_more_pairs():
    low, high = wilson_interval(37, 72)
    assert (round(low, 3), round(high, 3)) == (0.401, 0.626)
    assert wilson_interval(370, 720)[1] - wilson_interval(370, 720)[0] < high - low
    assert wilson_interval(0, 10)[0] == 0 and wilson_interval(10, 10)[1] == 1
    with pytest.raises(ValueError, match="at least one pair"):
        wilson_interval(0, 0)


def test_the_coin_range_is_half_plus_or_minus_two_standard_errors():
    low, high = coin_interval(72)
    assert low == pytest.approx(0.5 - 1.96 * 0.5 / math.sqrt(72), abs=1e-3)
    assert high == pytest.approx(1 - low)
    assert coin_interval(1) == (0.0, 1.0)


def test_pairs_of_one_tree_widen_the_bootstrap_beyond_wilson():
    # 10 trees of 10 pairs each, every tree all right or all wrong: 100 pairs carry the information of 10
    outcomes, trees = [], []
    for tree in range(10):
        outcomes += [1.0 if tree < 6 else 0.0] * 10
        trees += [f"t{tree}"] * 10
    row = accuracy_with_intervals(trees, outcomes, resamples=1000)
    wilson_width = row["wilson"][1] - row["wilson"][0]
    bootstrap_width = row["tree_bootstrap"][1] - row["tree_bootstrap"][0]
    assert row["accuracy"] == 0.6 and bootstrap_width > 1.8 * wilson_width
    assert row["interval"] == [min(row["wilson"][0], row["tree_bootstrap"][0]), row["tree_bootstrap"][1]]


def test_a_model_ahead_of_the_rule_on_every_tree_has_a_positive_difference_interval():
    pairs = [pair(tree=f"t{i}", chosen=1.0, rejected=0.0, chosen_length=1, rejected_length=9) for i in range(40)]
    difference = evaluate_scored_pairs(pairs, **FAST)["model_minus_length_rule"]
    assert difference == {"difference": 1.0, "interval": [1.0, 1.0]}
    mixed = pairs[:20] + [pair(tree=f"u{i}", chosen=0.0, rejected=1.0) for i in range(20)]
    assert evaluate_scored_pairs(mixed, **FAST)["model_minus_length_rule"]["interval"][0] < 0


def test_no_pairs_give_no_accuracy_and_pair_file_pairs_are_trees_of_their_own():
    assert evaluate_scored_pairs([]) == {"accuracy": None, "pairs": 0, "trees": 0}
    pairs = [PreferencePair("", "en", (), chosen="b", rejected="a", rank_gap=1)] * 3
    assert evaluate_preference_pairs(pairs, [1, 1, 0], [0, 0, 1], **FAST)["trees"] == 3
