"""Points, levels, streaks and the troll score, computed by hand."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranking import scoring

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_points_formula_by_hand():
    counts = {"prompt": 25, "assistant_reply": 3, "prompter_reply": 2, "simple_label": 4, "full_label": 5,
              "ranking": 6, "good_ranking": 4, "accepted_prompt": 19, "accepted_assistant_reply": 2,
              "accepted_prompter_reply": 1, "ranked_1st": 1, "ranked_2nd": 2, "ranked_3rd": 3}
    # int(2.5)=2 + 12 + 2 + 4 + 10 + 6 + 4 + int(1.9)=1 + 8 + 1 + 9 + 6 + 3
    assert scoring.score(counts) == 68
    assert scoring.breakdown(counts)["prompt"] == 2 and scoring.breakdown(counts)["accepted_prompt"] == 1


def test_nine_prompts_earn_nothing_ten_earn_one():
    assert scoring.score({"prompt": 9}) == 0
    assert scoring.score({"prompt": 10}) == 1


@given(st.dictionaries(st.sampled_from(scoring.KINDS), st.integers(0, 10**6)))
def test_scores_are_never_negative_and_grow_with_contributions(counts):
    points = scoring.score(counts)
    assert points >= 0
    for kind in scoring.KINDS:
        assert scoring.score({**counts, kind: counts.get(kind, 0) + 10}) >= points


def test_level_thresholds_follow_the_spec():
    assert len(scoring.LEVEL_THRESHOLDS) == 100
    # i=1: 4.1521 -> 4; i=2: +5.3042 -> 9.4563 -> 9; i=3: +6.4563 -> 15.9126 -> 16
    assert scoring.LEVEL_THRESHOLDS[:4] == (0, 4, 9, 16)
    assert scoring.level(0) == 1 and scoring.level(3) == 1 and scoring.level(4) == 2 and scoring.level(16) == 4
    assert scoring.level(10**9) == 100
    assert scoring.level_progress(6) == (2, 5)
    assert scoring.level_progress(10**9)[1] is None


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_level_never_falls_as_points_grow(a, b):
    low, high = sorted((a, b))
    assert 1 <= scoring.level(low) <= scoring.level(high) <= 100


@pytest.mark.parametrize("last_activity, last_day, days, now, expected", [
    (None, None, 0, T0, (1, T0)),                                              # first contribution
    (T0, T0, 1, T0 + timedelta(hours=5), (1, T0)),                             # same day
    (T0 + timedelta(hours=20), T0, 1, T0 + timedelta(hours=25), (2, T0 + timedelta(hours=25))),  # next day
    (T0, T0, 3, T0 + timedelta(hours=30), (4, T0 + timedelta(hours=30))),      # 30 h idle: still a streak
    (T0, T0, 3, T0 + timedelta(hours=37), (1, T0 + timedelta(hours=37))),      # 36 h idle: reset
])
def test_streaks(last_activity, last_day, days, now, expected):
    assert scoring.streak_after_activity(streak_days=days, streak_last_day_at=last_day,
                                         last_activity_at=last_activity, now=now) == expected


def test_streak_shown_drops_to_zero_after_36_idle_hours():
    assert scoring.streak_now(streak_days=5, last_activity_at=T0, now=T0 + timedelta(hours=35)) == 5
    assert scoring.streak_now(streak_days=5, last_activity_at=T0, now=T0 + timedelta(hours=37)) == 0


def test_troll_score_by_hand():
    counts = {"red_flags": 2, "upvotes": 3, "downvotes": 4, "spam_prompts": 1, "pii": 1, "hate_speech": 2}
    assert scoring.troll_score(counts) == 6 - 3 + 4 + 1 + 1 + 2
