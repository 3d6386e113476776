"""Reads of the reward model's scores beside the people's verdicts: the score bands of the message
admin's filter, the lowest-scored recent replies, the replies where the model and the consensus
disagree, and what the ranking queue weighs: the serving model's sibling scores and how far its order
departs from the rankings given. No writes here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db.models import Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from ranking.consensus import kendall_tau
from ranking.models import Ranking
from tasks.models import Message, Role, ServingScorer
from tasks.tree_manager import disagreement

# Fixed bands over the reward score (a logit: 0 is "as likely good as bad"); quantiles would move
# under a moderator's feet as new replies are scored, and a band is easier to say in a report.
LOW_BELOW = -1.0
HIGH_FROM = 1.0
SCORE_BANDS = {
    "unscored": (gettext_lazy("Unscored"), Q(reward_score__isnull=True)),
    "low": (format_lazy(gettext_lazy("Low (< {low:g})"), low=LOW_BELOW), Q(reward_score__lt=LOW_BELOW)),
    "middle": (format_lazy(gettext_lazy("Middle ({low:g} to {high:g})"), low=LOW_BELOW, high=HIGH_FROM),
               Q(reward_score__gte=LOW_BELOW, reward_score__lt=HIGH_FROM)),
    "high": (format_lazy(gettext_lazy("High (≥ {high:g})"), high=HIGH_FROM), Q(reward_score__gte=HIGH_FROM)),
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


def serving_scores(parent_ids: Iterable) -> dict:
    """{parent id: {reply id: score}} for each parent's accepted live replies scored by the reward model in
    service (the run ServingScorer names, read in the same query); none in service, no score counts."""
    serving = ServingScorer.objects.filter(pk=ServingScorer.SINGLETON).values("run_id")[:1]
    scores: dict = {}
    for parent_id, pk, score in (Message.objects.filter(parent_id__in=list(parent_ids), deleted=False,
                                                        review_result=True, reward_score__isnull=False,
                                                        reward_run_id=Subquery(serving))
                                 .values_list("parent_id", "pk", "reward_score")):
        scores.setdefault(parent_id, {})[pk] = score
    return scores


def model_doubts(parent_ids: Iterable, *, with_disagreement: bool) -> dict:
    """{parent id: (closest score gap or None, disagreement with the rankings given or None)} for the ranking
    queue: one query for the serving model's scores, one more for the rankings only `with_disagreement`."""
    scores = {parent: by_reply for parent, by_reply in serving_scores(parent_ids).items() if len(by_reply) >= 2}
    rankings: dict = {}
    if with_disagreement and scores:
        for parent_id, order in Ranking.objects.filter(parent_id__in=list(scores), not_rankable=False).values_list(
                "parent_id", "ranking"):
            rankings.setdefault(parent_id, []).append(order)
    doubts = {}
    for parent_id, by_reply in scores.items():
        values = sorted(by_reply.values())
        gap = min(b - a for a, b in zip(values, values[1:], strict=False))
        # Rankings store reply ids as text; scores are keyed by the reply's id as the database gives it.
        by_text = {str(pk): score for pk, score in by_reply.items()}
        doubts[parent_id] = (gap, disagreement(by_text, rankings.get(parent_id, [])))
    return doubts
