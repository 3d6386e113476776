"""Ranked pairs consensus and agreement, as pure functions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranking.consensus import kendall_tau, kendalls_w, kept_items, ranked_pairs

ITEMS = ["a", "b", "c", "d", "e"]
rankings_strategy = st.lists(st.permutations(ITEMS), min_size=1, max_size=7)


def test_hand_computed_case():
    # a>b 2:1, a>c 2:1, b>c 3:0 -> a, b, c
    assert ranked_pairs([["a", "b", "c"], ["b", "c", "a"], ["a", "b", "c"]]) == ["a", "b", "c"]


def test_condorcet_cycle_is_broken_at_its_weakest_pair():
    # a>b 3:2... build a>b (4:1), b>c (3:2), c>a (3:2): lock a>b, then b>c or c>a (equal 3:2);
    # the tie between them is broken by a fixed item order, and the weakest link of the cycle is dropped.
    rankings = [["a", "b", "c"]] * 2 + [["c", "a", "b"]] * 2 + [["b", "c", "a"]]
    order = ranked_pairs(rankings)
    assert order[0] == "a" and sorted(order) == ["a", "b", "c"]


def test_only_items_in_every_ranking_are_kept():
    assert kept_items([["a", "b", "c"], ["c", "a"]]) == ["a", "c"]
    assert ranked_pairs([["a", "b", "c"], ["c", "a"], ["a", "c", "x"]]) == ["a", "c"]


def test_single_ranking_and_tiny_inputs():
    assert ranked_pairs([["x", "y"]]) == ["x", "y"]
    assert ranked_pairs([]) == []
    assert ranked_pairs([["only"]]) == ["only"]


@given(rankings_strategy)
def test_result_is_a_permutation_of_the_kept_items(rankings):
    assert sorted(ranked_pairs(rankings)) == sorted(kept_items(rankings))


@given(st.permutations(ITEMS), st.integers(1, 6))
def test_unanimous_rankings_are_reproduced(order, copies):
    assert ranked_pairs([list(order)] * copies) == list(order)


@given(rankings_strategy)
def test_result_does_not_depend_on_the_order_of_the_rankings(rankings):
    assert ranked_pairs(rankings) == ranked_pairs(list(reversed(rankings)))


@given(rankings_strategy)
def test_a_condorcet_winner_comes_first(rankings):
    def beats(x, y):
        return sum(r.index(x) < r.index(y) for r in rankings) > len(rankings) / 2

    winners = [x for x in ITEMS if all(beats(x, y) for y in ITEMS if y != x)]
    if winners:
        assert ranked_pairs(rankings)[0] == winners[0]


def test_kendall_tau():
    assert kendall_tau(["a", "b", "c"], ["a", "b", "c"]) == 1
    assert kendall_tau(["a", "b", "c"], ["c", "b", "a"]) == -1
    assert kendall_tau(["a", "b", "c"], ["b", "a", "c"]) == pytest.approx(1 / 3)


def test_kendalls_w():
    assert kendalls_w([["a", "b", "c"]] * 3) == 1
    assert kendalls_w([["a", "b"], ["b", "a"]]) == 0
    assert kendalls_w([["a", "b"]]) is None
