"""The tree manager's decisions, as pure functions (no database)."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks import tree_manager as tm
from tasks.models import Role, TaskType, TreeState
from tasks.tree_manager import Candidate, Pool, TreeConfig

CONFIG = TreeConfig()


def labels(spam, lang_mismatch):
    return {"spam": {"value": spam, "count": 3}, "lang_mismatch": {"value": lang_mismatch, "count": 3}}


@pytest.mark.parametrize("spam, mismatch, accepted", [
    (0, 0, True), (0.3, 0, True), (0.2, 0.19, True), (0.4, 0, False), (0.2, 0.2, False), (1, 0, False),
])
def test_acceptance_rule_is_one_minus_spam_and_mismatch_above_threshold(spam, mismatch, accepted):
    assert tm.review_accepted(labels(spam, mismatch), 0.6) is accepted


def test_labels_merge_keeps_a_running_mean():
    merged = tm.labels_merge({}, {"spam": 1, "quality": 0.5})
    merged = tm.labels_merge(merged, {"spam": 0, "quality": 1})
    merged = tm.labels_merge(merged, {"spam": 0})
    assert merged["spam"] == {"value": pytest.approx(1 / 3), "count": 3}
    assert merged["quality"] == {"value": 0.75, "count": 2}


@pytest.mark.parametrize("name, value, ok", [
    ("spam", 0, True), ("spam", 1, True), ("spam", 0.5, False), ("quality", 0.75, True), ("quality", 0.7, False),
    ("humor", -0.25, False), ("spam", True, False), ("spam", "0", False),
])
def test_label_values(name, value, ok):
    assert (tm.label_value_error(name, value) is None) is ok


def test_simple_reviews_ask_spam_and_language_and_quality_for_replies():
    assert tm.label_set(mode="simple", role=Role.PROMPTER, is_root=True) == (["spam", "lang_mismatch"], ["spam"])
    valid, mandatory = tm.label_set(mode="simple", role=Role.ASSISTANT, is_root=False)
    assert valid == ["spam", "lang_mismatch", "quality"] and mandatory == ["spam"]
    valid, _ = tm.label_set(mode="full", role=Role.ASSISTANT, is_root=False)
    assert set(valid) == set(tm.ALL_LABELS)


def test_full_review_probabilities_follow_the_settings():
    rng = random.Random(1)
    prompter_modes = [tm.review_mode(role=Role.PROMPTER, is_root=False, config=CONFIG, rng=rng) for _ in range(2000)]
    assert 0.07 < prompter_modes.count("full") / 2000 < 0.13
    assert {tm.review_mode(role=Role.ASSISTANT, is_root=False, config=CONFIG, rng=rng) for _ in range(50)} == {"full"}
    assert {tm.review_mode(role=Role.PROMPTER, is_root=True, config=CONFIG, rng=rng) for _ in range(50)} == {"full"}


def test_prompt_review_outcome():
    assert tm.state_after_prompt_review(True) == TreeState.PROMPT_LOTTERY_WAITING
    assert tm.state_after_prompt_review(False) == TreeState.ABORTED_LOW_GRADE


@pytest.mark.parametrize("kwargs, finished", [
    ({"accepted_count": 12, "awaiting_review": 0, "replies_pending": 0, "extendible_parents": 3}, True),
    ({"accepted_count": 12, "awaiting_review": 1, "replies_pending": 0, "extendible_parents": 3}, False),
    ({"accepted_count": 5, "awaiting_review": 0, "replies_pending": 0, "extendible_parents": 2}, False),
    ({"accepted_count": 5, "awaiting_review": 0, "replies_pending": 0, "extendible_parents": 0}, True),
    ({"accepted_count": 5, "awaiting_review": 0, "replies_pending": 1, "extendible_parents": 0}, False),
])
def test_growth_finishes_at_goal_size_or_when_nothing_can_grow(kwargs, finished):
    assert tm.growth_finished(goal=12, **kwargs) is finished


def test_transitions_follow_the_spec_arrows():
    assert tm.transition_allowed(TreeState.INITIAL_PROMPT_REVIEW, TreeState.PROMPT_LOTTERY_WAITING)
    assert tm.transition_allowed(TreeState.GROWING, TreeState.RANKING)
    assert tm.transition_allowed(TreeState.READY_FOR_SCORING, TreeState.SCORING_FAILED)
    assert tm.transition_allowed(TreeState.SCORING_FAILED, TreeState.READY_FOR_SCORING)
    assert tm.transition_allowed(TreeState.GROWING, TreeState.HALTED_BY_MODERATOR)
    assert tm.transition_allowed(TreeState.HALTED_BY_MODERATOR, TreeState.GROWING)
    assert not tm.transition_allowed(TreeState.INITIAL_PROMPT_REVIEW, TreeState.GROWING)
    assert not tm.transition_allowed(TreeState.READY_FOR_EXPORT, TreeState.GROWING)
    assert not tm.transition_allowed(TreeState.RANKING, TreeState.GROWING)
    assert not tm.transition_allowed(TreeState.ABORTED_LOW_GRADE, TreeState.HALTED_BY_MODERATOR)


def test_reply_limits_by_parent_role():
    assert CONFIG.reply_limit(Role.PROMPTER) == 3
    assert CONFIG.reply_limit(Role.ASSISTANT) == 1


@pytest.mark.parametrize("candidate, task_type", [
    (Candidate(Pool.PROMPT), TaskType.INITIAL_PROMPT),
    (Candidate(Pool.REVIEW_PROMPT, role=Role.PROMPTER), TaskType.LABEL_INITIAL_PROMPT),
    (Candidate(Pool.REVIEW_REPLY, role=Role.ASSISTANT), TaskType.LABEL_ASSISTANT_REPLY),
    (Candidate(Pool.REVIEW_REPLY, role=Role.PROMPTER), TaskType.LABEL_PROMPTER_REPLY),
    (Candidate(Pool.REPLY, role=Role.PROMPTER), TaskType.ASSISTANT_REPLY),
    (Candidate(Pool.REPLY, role=Role.ASSISTANT), TaskType.PROMPTER_REPLY),
    (Candidate(Pool.RANKING, role=Role.PROMPTER), TaskType.RANK_ASSISTANT_REPLIES),
])
def test_candidate_becomes_the_right_task_type(candidate, task_type):
    assert tm.task_type_for(candidate) == task_type


def test_pool_draw_follows_the_weights():
    rng = random.Random(7)
    weights = CONFIG.pool_weights()
    draws = [tm.choose_pool([Pool.RANKING, Pool.REPLY], weights, rng) for _ in range(6000)]
    assert 0.8 < draws.count(Pool.RANKING) / 6000 < 0.87  # 10 / (10 + 2)
    assert tm.choose_pool([], weights, rng) is None
    assert tm.choose_pool([Pool.PROMPT], {Pool.PROMPT: 0}, rng) is None


def test_lonely_prompter_messages_come_first_most_of_the_time():
    crowded = Candidate(Pool.REPLY, message_id="crowded", role=Role.PROMPTER, children_count=2)
    lonely = Candidate(Pool.REPLY, message_id="lonely", role=Role.PROMPTER, children_count=0)
    rng = random.Random(3)
    firsts = [tm.order_candidates([crowded, lonely], CONFIG, rng)[0].message_id for _ in range(4000)]
    # 0.75 lonely-first, plus half of the random remaining quarter
    assert 0.84 < firsts.count("lonely") / 4000 < 0.91


@given(st.dictionaries(st.sampled_from(Pool.ALL), st.integers(1, 5), min_size=1), st.integers(0, 10**6))
def test_plan_tries_every_candidate_exactly_once(sizes, seed):
    candidates = {pool: [Candidate(pool, message_id=f"{pool}-{i}") for i in range(n)] for pool, n in sizes.items()}
    ordered = tm.plan(candidates, CONFIG.pool_weights(), CONFIG, random.Random(seed))
    assert sorted(c.message_id for c in ordered) == sorted(c.message_id for cs in candidates.values() for c in cs)


def test_lottery_prefers_authors_whose_replies_did_well():
    rng = random.Random(5)
    picks = [tm.lottery_pick([("good", 1.0), ("new", 0.0)], rng) for _ in range(3000)]
    assert 0.62 < picks.count("good") / 3000 < 0.71  # weights 2 : 1
    assert tm.lottery_pick([], rng) is None
