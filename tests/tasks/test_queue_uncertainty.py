"""The ranking queue asks where the reward model is least sure: tasks.tree_manager.by_uncertainty (pure, with
Hypothesis) and its wiring through the candidates' sibling score gaps."""

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks import selectors, services
from tasks import tree_manager as tm
from tasks.models import Message
from tasks.tree_manager import Candidate, Pool, TreeConfig
from tests.factories import UserFactory
from tests.tasks.builders import prompt_in_ranking

gaps = st.one_of(st.none(), st.floats(min_value=0, max_value=50, allow_nan=False))
ranking_pools = st.lists(gaps, min_size=1, max_size=12).map(
    lambda values: [Candidate(pool=Pool.RANKING, message_id=i, tree_id=i, role="prompter", children_count=2,
                              score_gap=gap) for i, gap in enumerate(values)])
other_pool = st.lists(st.integers(0, 99), max_size=5, unique=True).map(
    lambda ids: [Candidate(pool=Pool.REVIEW_REPLY, message_id=100 + i, role="assistant") for i in ids])


def plans(candidates, config, seed):
    return tm.plan(candidates, config.pool_weights(), config, random.Random(seed))


@given(ranking_pools, other_pool, st.floats(min_value=0, max_value=100), st.integers(0, 2**32))
def test_the_factor_only_reorders_the_eligible_candidates(ranking, reviews, weight, seed):
    config = TreeConfig(weight_ranking_uncertainty=weight)
    ordered = plans({Pool.RANKING: ranking, Pool.REVIEW_REPLY: reviews}, config, seed)
    assert sorted(c.message_id for c in ordered) == sorted(c.message_id for c in ranking + reviews)
    assert len(ordered) == len(ranking) + len(reviews)


@given(ranking_pools, other_pool, st.integers(0, 2**32))
def test_weight_zero_leaves_every_choice_as_it_was(ranking, reviews, seed):
    candidates = {Pool.RANKING: ranking, Pool.REVIEW_REPLY: reviews}
    unscored = {Pool.RANKING: [replace(c, score_gap=None) for c in ranking], Pool.REVIEW_REPLY: reviews}
    with_scores = [c.message_id for c in plans(candidates, TreeConfig(weight_ranking_uncertainty=0), seed)]
    without = [c.message_id for c in plans(unscored, TreeConfig(weight_ranking_uncertainty=0), seed)]
    assert with_scores == without


@given(st.lists(st.none(), min_size=1, max_size=12), st.floats(min_value=0.1, max_value=100), st.integers(0, 2**32))
def test_unscored_siblings_are_neutral(values, weight, seed):
    ranking = [Candidate(pool=Pool.RANKING, message_id=i, role="prompter") for i in range(len(values))]
    on = plans({Pool.RANKING: ranking}, TreeConfig(weight_ranking_uncertainty=weight), seed)
    off = plans({Pool.RANKING: ranking}, TreeConfig(weight_ranking_uncertainty=0), seed)
    assert on == off


@given(st.floats(min_value=0, max_value=0.2), st.floats(min_value=3, max_value=50),
       st.lists(gaps, max_size=8), st.integers(0, 2**32))
def test_with_fixed_scores_the_closest_pair_goes_before_a_far_one(close, far, others, seed):
    """uncertainty(close) - uncertainty(far) > 0.5 here, so weight 2 always puts the close one first."""
    close_one = Candidate(pool=Pool.RANKING, message_id="close", score_gap=close)
    far_one = Candidate(pool=Pool.RANKING, message_id="far", score_gap=far)
    rest = [Candidate(pool=Pool.RANKING, message_id=i, score_gap=gap) for i, gap in enumerate(others)]
    ordered = [c.message_id for c in plans({Pool.RANKING: [far_one, *rest, close_one]},
                                           TreeConfig(weight_ranking_uncertainty=2), seed)]
    assert ordered.index("close") < ordered.index("far")


def test_with_fixed_scores_the_closest_pair_comes_first_over_many_draws():
    candidates = [Candidate(pool=Pool.RANKING, message_id=name, score_gap=gap)
                  for name, gap in [("wide", 4.0), ("tie", 0.0), ("unscored", None), ("near", 0.5)]]
    firsts = {plans({Pool.RANKING: candidates}, TreeConfig(weight_ranking_uncertainty=5), seed)[0].message_id
              for seed in range(200)}
    assert firsts == {"tie"}
    firsts_off = {plans({Pool.RANKING: candidates}, TreeConfig(), seed)[0].message_id for seed in range(200)}
    assert firsts_off == {"wide", "tie", "unscored", "near"}


@pytest.mark.parametrize("gap, expected", [(None, 0.5), (0.0, 1.0), (1.0, 0.5), (-3.0, 0.25)])
def test_uncertainty(gap, expected):
    assert tm.uncertainty(gap) == expected


@pytest.mark.django_db
def test_the_queue_hands_out_the_parent_whose_replies_score_closest(small_trees, tree_settings):
    tree_settings(max_active_trees=4)
    sure = prompt_in_ranking([UserFactory() for _ in range(3)])
    unsure = prompt_in_ranking([UserFactory() for _ in range(3)])
    for prompt, scores in ((sure, [-3.0, 4.0]), (unsure, [0.1, 0.2])):
        for message, score in zip(Message.objects.filter(parent=prompt).order_by("created_at"), scores, strict=True):
            Message.objects.filter(pk=message.pk).update(reward_score=score, reward_run_id=7)
    services.serving_scorer_set(run_id=7)  # the run whose model is in service wrote these scores
    ranker = UserFactory()
    tree_settings(weight_ranking_uncertainty=10, num_required_rankings=20)
    candidates, _ = selectors.task_candidates(user=ranker, lang="en", config=tm.tree_config(),
                                              pools={Pool.RANKING: None})
    assert {c.message_id: c.score_gap for c in candidates[Pool.RANKING]} == {
        sure.pk: pytest.approx(7.0), unsure.pk: pytest.approx(0.1)}
    chosen = [services.task_request(user=UserFactory(), task_type="rank_assistant_replies", lang="en",
                                    rng=random.Random(seed)).item_id for seed in range(8)]
    assert set(chosen) == {unsure.pk}

    tree_settings(weight_ranking_uncertainty=0)
    chosen = {services.task_request(user=UserFactory(), task_type="rank_assistant_replies", lang="en",
                                    rng=random.Random(seed)).item_id for seed in range(20)}
    assert chosen == {sure.pk, unsure.pk}
