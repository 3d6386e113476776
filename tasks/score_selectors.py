"""Reads of the reward model's scores beside the people's verdicts: the score bands of the message
admin's filter, the lowest-scored recent replies, the replies where the model and the consensus
disagree, and the closest sibling scores the ranking queue weighs. No writes here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from ranking.consensus import kendall_tau
from tasks.models import Message, Role

# Fixed bands over the reward score (a logit: 0 is "as likely good as bad"); quantiles would move
# under a moderator's feet as new replies are scored, and a band is easier to say in a report.
LOW_BELOW = -1.0
HIGH_FROM = 1.0
SCORE_BANDS = {
    "unscored": ("Unscored", Q(reward_score__isnull=True)),
    "low": (f"Low (< {LOW_BELOW:g})", Q(reward_score__lt=LOW_BELOW)),
    "middle": (f"Middle ({LOW_BELOW:g} to {HIGH_FROM:g})", Q(reward_score__gte=LOW_BELOW, reward_score__lt=HIGH_FROM)),
    "high": (f"High (≥ {HIGH_FROM:g})", Q(reward_score__gte=HIGH_FROM)),
}
DISAGREEMENT_MAX_ROWS = 5000


def accepted_replies(*, days: int, now=None) -> QuerySet[Message]:
    since = (now or timezone.now()) - timedelta(days=days)
    return Message.objects.filter(role=Role.ASSISTANT, review_result=True, deleted=False, created_at__gte=since)


def lowest_scored_replies(*, days: int, limit: int = 100, now=None) -> list[Message]:
    """Accepted assistant replies of the last `days` days that have a score, lowest first."""
    return list(accepted_replies(days=days, now=now).filter(reward_score__isnull=False)
                .select_related("author").order_by("reward_score", "-created_at")[:limit])


def disagreements(*, days: int, max_tau: float = 0.0, limit: int = 100, now=None) -> list[dict]:
    """Sibling sets (two or more ranked and scored replies under one parent, the parent created in the
    last `days` days) where the model's order contradicts the consensus: Kendall tau between the
    consensus order and the score order at most `max_tau`, worst first. Each entry names the reply
    people put first and the one the model puts first."""
    since = (now or timezone.now()) - timedelta(days=days)
    rows = (Message.objects.filter(parent__created_at__gte=since, deleted=False, rank__isnull=False,
                                   reward_score__isnull=False)
            .order_by("parent_id", "rank").values_list("parent_id", "pk", "rank", "reward_score", "text")
            [:DISAGREEMENT_MAX_ROWS])
    groups: dict = {}
    for parent_id, pk, rank, score, text in rows:
        groups.setdefault(parent_id, []).append({"id": pk, "rank": rank, "score": score, "text": text[:90]})
    found = []
    for parent_id, replies in groups.items():
        if len(replies) < 2:
            continue
        by_people = [r["id"] for r in replies]  # already in rank order
        by_model = [r["id"] for r in sorted(replies, key=lambda r: -r["score"])]
        tau = kendall_tau(by_people, by_model)
        if tau <= max_tau:
            first = {r["id"]: r for r in replies}
            found.append({"parent_id": parent_id, "tau": tau, "size": len(replies),
                          "people_first": first[by_people[0]], "model_first": first[by_model[0]],
                          "people_first_is_model_last": by_people[0] == by_model[-1]})
    found.sort(key=lambda entry: (entry["tau"], str(entry["parent_id"])))
    return found[:limit]


def sibling_score_gaps(parent_ids: Iterable) -> dict:
    """The smallest gap between the reward scores of each parent's accepted live replies; parents with
    fewer than two scored replies are left out (the queue treats them as neutral)."""
    scores: dict = {}
    for parent_id, score in (Message.objects.filter(parent_id__in=list(parent_ids), deleted=False,
                                                    review_result=True, reward_score__isnull=False)
                             .values_list("parent_id", "reward_score")):
        scores.setdefault(parent_id, []).append(score)
    gaps = {}
    for parent_id, values in scores.items():
        if len(values) >= 2:
            values.sort()
            gaps[parent_id] = min(b - a for a, b in zip(values, values[1:], strict=False))
    return gaps
