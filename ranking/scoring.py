"""Points, levels, streaks and the troll score: pure functions over plain data (SPEC: Scoring)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from itertools import accumulate

# Contribution kinds counted for points, with their weight in SPEC's formula.
PROMPT = "prompt"
ASSISTANT_REPLY = "assistant_reply"
PROMPTER_REPLY = "prompter_reply"
SIMPLE_LABEL = "simple_label"
FULL_LABEL = "full_label"
RANKING = "ranking"
GOOD_RANKING = "good_ranking"
ACCEPTED_PROMPT = "accepted_prompt"
ACCEPTED_ASSISTANT_REPLY = "accepted_assistant_reply"
ACCEPTED_PROMPTER_REPLY = "accepted_prompter_reply"
RANKED_1ST = "ranked_1st"
RANKED_2ND = "ranked_2nd"
RANKED_3RD = "ranked_3rd"

WEIGHTS: dict[str, float] = {
    PROMPT: 0.1,
    ASSISTANT_REPLY: 4,
    PROMPTER_REPLY: 1,
    SIMPLE_LABEL: 1,
    FULL_LABEL: 2,
    RANKING: 1,
    GOOD_RANKING: 1,
    ACCEPTED_PROMPT: 0.1,
    ACCEPTED_ASSISTANT_REPLY: 4,
    ACCEPTED_PROMPTER_REPLY: 1,
    RANKED_1ST: 9,
    RANKED_2ND: 3,
    RANKED_3RD: 1,
}
KINDS = tuple(WEIGHTS)
RANK_EVENTS = (RANKED_1ST, RANKED_2ND, RANKED_3RD)  # consensus rank 0, 1, 2
TASK_EVENTS = (PROMPT, ASSISTANT_REPLY, PROMPTER_REPLY, SIMPLE_LABEL, FULL_LABEL, RANKING)  # one per task done

FRAMES: dict[str, timedelta | None] = {
    "day": timedelta(hours=24),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
    "total": None,
}


def breakdown(counts: Mapping[str, int]) -> dict[str, int]:
    """Points per kind. Prompts count a tenth each, rounded down per kind as SPEC's int() says."""
    return {kind: int(WEIGHTS[kind] * counts.get(kind, 0)) for kind in KINDS}


def score(counts: Mapping[str, int]) -> int:
    return sum(breakdown(counts).values())


LEVEL_THRESHOLDS: tuple[int, ...] = (0, *(round(x) for x in accumulate(1.1521 * i + 3 for i in range(1, 100))))


def level(points: int) -> int:
    """Level 1..100: the number of thresholds reached (the first threshold is 0)."""
    return sum(1 for threshold in LEVEL_THRESHOLDS if points >= threshold)


def level_progress(points: int) -> tuple[int, int | None]:
    """(points into the current level, points the next level needs in all, or None at 100)."""
    current = level(points)
    if current >= len(LEVEL_THRESHOLDS):
        return points - LEVEL_THRESHOLDS[-1], None
    return points - LEVEL_THRESHOLDS[current - 1], LEVEL_THRESHOLDS[current] - LEVEL_THRESHOLDS[current - 1]


STREAK_RESET = timedelta(hours=36)
STREAK_DAY = timedelta(hours=24)


def streak_after_activity(*, streak_days: int, streak_last_day_at: datetime | None,
                          last_activity_at: datetime | None, now: datetime) -> tuple[int, datetime | None]:
    """(streak days, when the streak last gained a day) after activity at `now`.

    A streak gains a day each time 24 h have passed since it last did; 36 h without any
    activity reset it, and the next activity starts a new streak of one day.
    """
    if last_activity_at is None or streak_last_day_at is None or now - last_activity_at > STREAK_RESET:
        return 1, now
    if now - streak_last_day_at >= STREAK_DAY:
        return streak_days + 1, now
    return streak_days, streak_last_day_at


def streak_now(*, streak_days: int, last_activity_at: datetime | None, now: datetime) -> int:
    """The streak to show: 0 once 36 h passed without activity."""
    if last_activity_at is None or now - last_activity_at > STREAK_RESET:
        return 0
    return streak_days


TROLL_WEIGHTS: dict[str, int] = {
    "red_flags": 3, "upvotes": -1, "downvotes": 1, "spam_prompts": 1, "lang_mismatch": 1,
    "not_appropriate": 1, "pii": 1, "hate_speech": 1, "sexual_content": 1, "political_content": 1,
}


def troll_score(counts: Mapping[str, int]) -> int:
    """SPEC: 3 red flags - upvotes + downvotes + spam prompts + lang_mismatch + not_appropriate + pii
    + hate_speech + sexual_content + political_content, counted on the user's messages."""
    return sum(weight * counts.get(name, 0) for name, weight in TROLL_WEIGHTS.items())
