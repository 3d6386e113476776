"""The ranking queue weighs only the reward model in service, and prefers parents where the model's order departs
from the rankings already given: tasks.tree_manager.disagreement and by_uncertainty's second weight (pure, with
Hypothesis), and their wiring through tasks.models.ServingScorer and the candidates."""

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks import selectors, services
from tasks import tree_manager as tm
from tasks.models import Message, ServingScorer
from tasks.tree_manager import Candidate, Pool, TreeConfig
from tests.factories import UserFactory
from tests.tasks.builders import open_task, prompt_in_ranking

doubts = st.one_of(st.none(), st.floats(min_value=0, max_value=1, allow_nan=False))
gaps = st.one_of(st.none(), st.floats(min_value=0, max_value=50, allow_nan=False))
ranking_pools = st.lists(st.tuples(gaps, doubts), min_size=1, max_size=12).map(
    lambda values: [Candidate(pool=Pool.RANKING, message_id=i, role="prompter", score_gap=gap, disagreement=doubt)
                    for i, (gap, doubt) in enumerate(values)])
other_pool = st.lists(st.integers(0, 99), max_size=5, unique=True).map(
    lambda ids: [Candidate(pool=Pool.REVIEW_REPLY, message_id=100 + i, role="assistant") for i in ids])
weights = st.floats(min_value=0, max_value=100)
score_sets = st.dictionaries(st.sampled_from("abcdef"), st.floats(min_value=-20, max_value=20, allow_nan=False),
                             min_size=2)


def plans(candidates, config, seed):
    return [c.message_id for c in tm.plan(candidates, config.pool_weights(), config, random.Random(seed))]


@given(score_sets, st.lists(st.permutations("abcdef"), max_size=4))
def test_disagreement_is_between_zero_and_one_or_neutral(scores, rankings):
    value = tm.disagreement(scores, rankings)
    assert value is None if not rankings else 0 <= value <= 1


@given(score_sets)
def test_rankings_in_the_models_order_agree_and_reversed_ones_disagree_fully(scores):
    by_model = sorted(scores, key=lambda reply: (-scores[reply], reply))
    assert tm.disagreement(scores, [by_model]) == 0
    assert tm.disagreement(scores, [by_model[::-1]]) == 1
    assert tm.disagreement(scores, [by_model, by_model[::-1]]) == 0.5
    assert tm.disagreement(scores, []) is None


def test_disagreement_ignores_what_it_cannot_compare():
    assert tm.disagreement({"a": 1.0}, [["a", "b"]]) is None  # one scored reply: the model has no order
    assert tm.disagreement({"a": 1.0, "b": 0.0}, [["a", "x"], []]) is None  # no ranking orders two scored replies
    assert tm.disagreement({"a": 1.0, "b": 0.0, "c": -1.0}, [["b", "a", "x"]]) == 1  # only the scored replies count


@given(ranking_pools, other_pool, weights, weights, st.integers(0, 2**32))
def test_both_factors_only_reorder_the_eligible_candidates(ranking, reviews, closeness, disagreeing, seed):
    config = TreeConfig(weight_ranking_uncertainty=closeness, weight_ranking_disagreement=disagreeing)
    ordered = plans({Pool.RANKING: ranking, Pool.REVIEW_REPLY: reviews}, config, seed)
    assert sorted(ordered) == sorted(c.message_id for c in ranking + reviews)


@given(ranking_pools, other_pool, weights, st.integers(0, 2**32))
def test_disagreement_weight_zero_leaves_the_closeness_order_as_it_was(ranking, reviews, closeness, seed):
    without = {Pool.RANKING: [replace(c, disagreement=None) for c in ranking], Pool.REVIEW_REPLY: reviews}
    config = TreeConfig(weight_ranking_uncertainty=closeness)
    assert plans({Pool.RANKING: ranking, Pool.REVIEW_REPLY: reviews}, config, seed) == plans(without, config, seed)


@given(st.integers(1, 12), weights, weights, st.integers(0, 2**32))
def test_parents_without_scores_or_rankings_are_neutral(count, closeness, disagreeing, seed):
    ranking = [Candidate(pool=Pool.RANKING, message_id=i) for i in range(count)]
    on = TreeConfig(weight_ranking_uncertainty=closeness, weight_ranking_disagreement=disagreeing)
    assert plans({Pool.RANKING: ranking}, on, seed) == plans({Pool.RANKING: ranking}, TreeConfig(), seed)


@given(st.floats(min_value=0.8, max_value=1), st.floats(min_value=0, max_value=0.2),
       st.lists(st.tuples(gaps, doubts), max_size=8), st.integers(0, 2**32))
def test_the_most_contested_parent_goes_before_a_settled_one(contested, settled, others, seed):
    """Same closeness; disagreement differs by more than 0.6, so weight 2 puts the contested one first."""
    first = Candidate(pool=Pool.RANKING, message_id="contested", score_gap=1.0, disagreement=contested)
    second = Candidate(pool=Pool.RANKING, message_id="settled", score_gap=1.0, disagreement=settled)
    rest = [Candidate(pool=Pool.RANKING, message_id=i, score_gap=gap, disagreement=doubt)
            for i, (gap, doubt) in enumerate(others)]
    config = TreeConfig(weight_ranking_uncertainty=1, weight_ranking_disagreement=2)
    ordered = plans({Pool.RANKING: [second, *rest, first]}, config, seed)
    assert ordered.index("contested") < ordered.index("settled")


# --- Wiring: the model in service, its scores, the rankings given ------------------------------------------------


def score(prompt, values, run_id):
    replies = list(Message.objects.filter(parent=prompt).order_by("created_at"))
    for message, value in zip(replies, values, strict=True):
        Message.objects.filter(pk=message.pk).update(reward_score=value, reward_run_id=run_id)
    return replies


def rank(prompt, order):
    """One ranking of the prompt's replies, submitted through the service the way a ranker would."""
    user = UserFactory()
    task = open_task(user, "rank_assistant_replies", prompt, reply_messages=[{"id": str(m.pk)} for m in order])
    services.ranking_submit(user=user, task_id=task.pk, ranking=[str(m.pk) for m in order])


def ranking_doubts(tree_settings, **weights):
    tree_settings(**weights)
    candidates, _ = selectors.task_candidates(user=UserFactory(), lang="en", config=tm.tree_config(),
                                              pools={Pool.RANKING: None})
    return {c.message_id: (c.score_gap, c.disagreement) for c in candidates[Pool.RANKING]}


@pytest.fixture
def two_parents(small_trees, tree_settings):
    tree_settings(max_active_trees=4)
    parents = [prompt_in_ranking([UserFactory() for _ in range(3)]) for _ in range(2)]
    tree_settings(num_required_rankings=20)
    return parents


@pytest.mark.django_db
def test_without_a_model_in_service_no_score_counts(two_parents, tree_settings):
    first, second = two_parents
    score(first, [0.1, 0.2], run_id=7)
    score(second, [-3.0, 4.0], run_id=None)  # e.g. scored by hand with a folder no run is known for
    on = {"weight_ranking_uncertainty": 10, "weight_ranking_disagreement": 10}
    assert ranking_doubts(tree_settings, **on) == {first.pk: (None, None), second.pk: (None, None)}
    assert not ServingScorer.objects.exists()

    services.serving_scorer_set(run_id=7)
    assert ranking_doubts(tree_settings, **on) == {first.pk: (pytest.approx(0.1), None), second.pk: (None, None)}
    services.serving_scorer_set(run_id=8)  # another run in service: run 7's scores no longer count
    assert ranking_doubts(tree_settings, **on) == {first.pk: (None, None), second.pk: (None, None)}
    services.serving_scorer_set(run_id=None)
    assert ranking_doubts(tree_settings, **on) == {first.pk: (None, None), second.pk: (None, None)}
    assert ServingScorer.objects.get().run_id is None


@pytest.mark.django_db
def test_the_queue_hands_out_the_parent_where_the_model_and_the_rankers_disagree(two_parents, tree_settings):
    contested, settled = two_parents
    services.serving_scorer_set(run_id=7)
    for prompt in two_parents:
        low, high = score(prompt, [0.0, 1.0], run_id=7)  # same gap: closeness cannot tell them apart
        rank(prompt, [low, high] if prompt == contested else [high, low])
    assert ranking_doubts(tree_settings, weight_ranking_disagreement=10) == {
        contested.pk: (pytest.approx(1.0), 1.0), settled.pk: (pytest.approx(1.0), 0.0)}

    chosen = {services.task_request(user=UserFactory(), task_type="rank_assistant_replies", lang="en",
                                    rng=random.Random(seed)).item_id for seed in range(8)}
    assert chosen == {contested.pk}
    tree_settings(weight_ranking_disagreement=0)
    chosen = {services.task_request(user=UserFactory(), task_type="rank_assistant_replies", lang="en",
                                    rng=random.Random(seed)).item_id for seed in range(20)}
    assert chosen == {contested.pk, settled.pk}
