"""The tree state machine and the choice of the next task, as pure functions over plain data.

Nothing here touches the database: `tasks.services` gathers the numbers, asks these functions
what to do, and writes the answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

from django.conf import settings
from django.utils.translation import gettext

from ranking.consensus import kendall_tau
from tasks.models import Role, TaskType, TreeState


@dataclass(frozen=True)
class TreeConfig:
    max_active_trees: int = 10
    max_initial_prompt_review: int = 100
    max_tree_depth: int = 3
    max_children_count: int = 3
    num_prompter_replies: int = 1
    goal_tree_size: int = 12
    num_reviews_initial_prompt: int = 3
    num_reviews_reply: int = 3
    num_required_rankings: int = 3
    acceptance_threshold: float = 0.6
    p_full_labeling_review_prompt: float = 1.0
    p_full_labeling_review_reply_assistant: float = 1.0
    p_full_labeling_review_reply_prompter: float = 0.1
    p_lonely_child_extension: float = 0.75
    lonely_children_count: int = 2
    auto_mod_enabled: bool = True
    auto_mod_red_flags: int = 4
    auto_mod_max_skip_reply: int = 25
    task_valid_for_seconds: int = 2 * 24 * 3600
    max_pending_tasks_per_user: int = 8
    pending_tasks_window_seconds: int = 300
    max_text_length: int = 2000
    duplicate_text_window_minutes: int = 120
    rank_prompter_replies: bool = False
    rank_initial_prompts: bool = False
    weight_ranking: float = 10
    weight_review_reply: float = 5
    weight_review_prompt: float = 5
    weight_reply: float = 2
    weight_prompt: float = 0.01
    good_ranking_tau: float = 0.5
    weight_ranking_uncertainty: float = 0.0  # 0: off; see uncertainty()
    weight_ranking_disagreement: float = 0.0  # 0: off; see disagreement()

    def pool_weights(self) -> dict[str, float]:
        return {
            Pool.RANKING: self.weight_ranking,
            Pool.REVIEW_REPLY: self.weight_review_reply,
            Pool.REVIEW_PROMPT: self.weight_review_prompt,
            Pool.REPLY: self.weight_reply,
            Pool.PROMPT: self.weight_prompt,
        }

    def reply_limit(self, parent_role: str) -> int:
        """How many replies a parent of this role may have."""
        return self.max_children_count if parent_role == Role.PROMPTER else self.num_prompter_replies

    def reviews_required(self, *, is_root: bool) -> int:
        return self.num_reviews_initial_prompt if is_root else self.num_reviews_reply


def tree_config() -> TreeConfig:
    known = {field.name for field in fields(TreeConfig)}
    return TreeConfig(**{key: value for key, value in settings.OASST.items() if key in known})


# --- Tree states -------------------------------------------------------------------------------

ACTIVE_STATES = frozenset({
    TreeState.INITIAL_PROMPT_REVIEW, TreeState.PROMPT_LOTTERY_WAITING, TreeState.GROWING,
    TreeState.RANKING, TreeState.READY_FOR_SCORING, TreeState.SCORING_FAILED, TreeState.BACKLOG_RANKING,
})

TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (TreeState.INITIAL_PROMPT_REVIEW, TreeState.PROMPT_LOTTERY_WAITING),
        (TreeState.INITIAL_PROMPT_REVIEW, TreeState.ABORTED_LOW_GRADE),
        (TreeState.PROMPT_LOTTERY_WAITING, TreeState.GROWING),
        (TreeState.PROMPT_LOTTERY_WAITING, TreeState.ABORTED_LOW_GRADE),
        (TreeState.GROWING, TreeState.RANKING),
        (TreeState.GROWING, TreeState.ABORTED_LOW_GRADE),
        (TreeState.RANKING, TreeState.READY_FOR_SCORING),
        (TreeState.RANKING, TreeState.ABORTED_LOW_GRADE),
        (TreeState.BACKLOG_RANKING, TreeState.RANKING),
        (TreeState.READY_FOR_SCORING, TreeState.READY_FOR_EXPORT),
        (TreeState.READY_FOR_SCORING, TreeState.SCORING_FAILED),
        (TreeState.SCORING_FAILED, TreeState.READY_FOR_SCORING),
    }
    | {(state, TreeState.HALTED_BY_MODERATOR) for state in ACTIVE_STATES}
    | {(TreeState.HALTED_BY_MODERATOR, state) for state in ACTIVE_STATES}
)


def transition_allowed(current: str, new: str) -> bool:
    return (current, new) in TRANSITIONS


# --- Reviews -----------------------------------------------------------------------------------

YES_NO_LABELS = ("spam", "fails_task", "lang_mismatch", "pii", "not_appropriate", "hate_speech",
                 "sexual_content", "moral_judgement", "political_content")
LIKERT_LABELS = ("quality", "toxicity", "humor", "helpfulness", "creativity", "violence")
ALL_LABELS = YES_NO_LABELS + LIKERT_LABELS
LIKERT_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)
PROMPT_FULL_LABELS = ("spam", "lang_mismatch", "pii", "not_appropriate", "hate_speech", "sexual_content",
                      "moral_judgement", "political_content", "quality", "toxicity", "humor", "creativity",
                      "violence")
ASSISTANT_FULL_LABELS = ALL_LABELS


def label_set(*, mode: str, role: str, is_root: bool) -> tuple[list[str], list[str]]:
    """(valid labels, mandatory labels) of a review task."""
    if mode == "simple":
        valid = ["spam", "lang_mismatch"] if is_root else ["spam", "lang_mismatch", "quality"]
    elif role == Role.ASSISTANT:
        valid = list(ASSISTANT_FULL_LABELS)
    else:
        valid = list(PROMPT_FULL_LABELS)
    return valid, ["spam"]


def review_mode(*, role: str, is_root: bool, config: TreeConfig, rng: random.Random) -> str:
    if is_root:
        p_full = config.p_full_labeling_review_prompt
    elif role == Role.ASSISTANT:
        p_full = config.p_full_labeling_review_reply_assistant
    else:
        p_full = config.p_full_labeling_review_reply_prompter
    return "full" if rng.random() < p_full else "simple"


def label_value_error(name: str, value: object) -> str | None:
    """Why a label value is invalid, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return gettext("%(name)s must be a number.") % {"name": name}
    if name in YES_NO_LABELS and value not in (0, 1):
        return gettext("%(name)s is a yes/no label: 0 or 1.") % {"name": name}
    if name in LIKERT_LABELS and float(value) not in LIKERT_VALUES:
        return gettext("%(name)s takes one of 0, 0.25, 0.5, 0.75, 1.") % {"name": name}
    return None


def labels_merge(current: Mapping[str, Mapping], new: Mapping[str, float]) -> dict[str, dict]:
    """Running mean per label: {name: {"value": mean, "count": n}}."""
    merged = {name: dict(entry) for name, entry in current.items()}
    for name, value in new.items():
        entry = merged.setdefault(name, {"value": 0.0, "count": 0})
        count = entry["count"] + 1
        entry["value"] = entry["value"] + (float(value) - entry["value"]) / count
        entry["count"] = count
    return merged


def review_accepted(labels: Mapping[str, Mapping], threshold: float) -> bool:
    """SPEC's rule: 1 - (mean spam + mean lang_mismatch) > threshold."""
    spam = labels.get("spam", {}).get("value", 0.0)
    lang_mismatch = labels.get("lang_mismatch", {}).get("value", 0.0)
    return 1 - (spam + lang_mismatch) > threshold


def state_after_prompt_review(accepted: bool) -> str:
    return TreeState.PROMPT_LOTTERY_WAITING if accepted else TreeState.ABORTED_LOW_GRADE


def growth_finished(*, accepted_count: int, awaiting_review: int, replies_pending: int, goal: int,
                    extendible_parents: int) -> bool:
    """A growing tree moves to ranking when it reached its goal size with nothing awaiting review,
    or when nothing is pending and no parent can take another reply."""
    if awaiting_review or replies_pending:
        return False
    return accepted_count >= goal or extendible_parents == 0


# --- Choosing the next task --------------------------------------------------------------------


class Pool:
    RANKING = "ranking"
    REVIEW_REPLY = "review_reply"
    REVIEW_PROMPT = "review_prompt"
    REPLY = "reply"
    PROMPT = "prompt"

    ALL = (RANKING, REVIEW_REPLY, REVIEW_PROMPT, REPLY, PROMPT)


POOL_OF_TYPE = {
    TaskType.INITIAL_PROMPT: Pool.PROMPT,
    TaskType.PROMPTER_REPLY: Pool.REPLY,
    TaskType.ASSISTANT_REPLY: Pool.REPLY,
    TaskType.RANK_ASSISTANT_REPLIES: Pool.RANKING,
    TaskType.RANK_PROMPTER_REPLIES: Pool.RANKING,
    TaskType.LABEL_INITIAL_PROMPT: Pool.REVIEW_PROMPT,
    TaskType.LABEL_PROMPTER_REPLY: Pool.REVIEW_REPLY,
    TaskType.LABEL_ASSISTANT_REPLY: Pool.REVIEW_REPLY,
}


def enabled_task_types(config: TreeConfig) -> list[str]:
    types = [t for t in POOL_OF_TYPE if t != TaskType.RANK_PROMPTER_REPLIES or config.rank_prompter_replies]
    return types


@dataclass(frozen=True)
class Candidate:
    """An item a task could be made for: the parent to reply to or rank, or the message to label."""

    pool: str
    message_id: object = None
    tree_id: object = None
    role: str = ""
    children_count: int = 0
    reply_limit: int = 0  # replies the parent may have (reply candidates only)
    score_gap: float | None = None  # ranking: smallest gap between its replies' reward scores; None unscored
    disagreement: float | None = None  # ranking: see disagreement(); None without scores or rankings


NEUTRAL_UNCERTAINTY = 0.5


def uncertainty(score_gap: float | None) -> float:
    """How unsure the reward model is of a parent's replies' order, in (0, 1]: 1 when two replies score
    the same, falling as the closest pair draws apart; NEUTRAL_UNCERTAINTY when the replies are unscored."""
    return NEUTRAL_UNCERTAINTY if score_gap is None else 1.0 / (1.0 + abs(score_gap))


def disagreement(scores: Mapping[object, float], rankings: Iterable[Sequence[object]]) -> float | None:
    """How far the reward model's order of a parent's replies (highest score first) departs from the rankings
    already given, in [0, 1]: the mean over those rankings of (1 - Kendall tau) / 2 on the replies both order
    (0 the same order, 1 reversed). None (neutral) with fewer than two scored replies or no ranking that orders
    two of them."""
    if len(scores) < 2:
        return None
    by_model = sorted(scores, key=lambda reply: (-scores[reply], str(reply)))
    taus = [kendall_tau(order, by_model) for order in rankings if sum(reply in scores for reply in order) >= 2]
    return (1 - sum(taus) / len(taus)) / 2 if taus else None


def task_type_for(candidate: Candidate) -> str:
    """The task type a candidate of a pool turns into (by the role of its message)."""
    if candidate.pool == Pool.PROMPT:
        return TaskType.INITIAL_PROMPT
    if candidate.pool == Pool.REVIEW_PROMPT:
        return TaskType.LABEL_INITIAL_PROMPT
    if candidate.pool == Pool.REVIEW_REPLY:
        return TaskType.LABEL_ASSISTANT_REPLY if candidate.role == Role.ASSISTANT else TaskType.LABEL_PROMPTER_REPLY
    if candidate.pool == Pool.REPLY:  # the candidate is the parent: its reply has the other role
        return TaskType.ASSISTANT_REPLY if candidate.role == Role.PROMPTER else TaskType.PROMPTER_REPLY
    return TaskType.RANK_ASSISTANT_REPLIES if candidate.role == Role.PROMPTER else TaskType.RANK_PROMPTER_REPLIES


def choose_pool(available: Iterable[str], weights: Mapping[str, float], rng: random.Random) -> str | None:
    """Weighted draw among the non-empty pools (pools of weight 0 are never drawn)."""
    pools = [pool for pool in available if weights.get(pool, 0) > 0]
    if not pools:
        return None
    return rng.choices(pools, weights=[weights[pool] for pool in pools], k=1)[0]


def order_candidates(candidates: Sequence[Candidate], config: TreeConfig, rng: random.Random) -> list[Candidate]:
    """The order in which to try to claim a pool's candidates.

    Replies: with probability p_lonely_child_extension, prompter messages with fewer than
    lonely_children_count replies come first. Otherwise a random order, which spreads
    concurrent requests over different items.
    """
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    if shuffled and shuffled[0].pool == Pool.REPLY and rng.random() < config.p_lonely_child_extension:
        def lonely(c: Candidate) -> bool:
            return c.role == Role.PROMPTER and c.children_count < config.lonely_children_count
        shuffled.sort(key=lambda c: not lonely(c))
    weights = (config.weight_ranking_uncertainty, config.weight_ranking_disagreement)
    if shuffled and shuffled[0].pool == Pool.RANKING and any(weight > 0 for weight in weights):
        shuffled = by_uncertainty(shuffled, weights[0], disagreement_weight=weights[1])
    return shuffled


def by_uncertainty(shuffled: Sequence[Candidate], weight: float, *,
                   disagreement_weight: float = 0.0) -> list[Candidate]:
    """Ranking candidates with the least sure first, as one factor beside chance: each keeps its random
    place (0..1) less `weight` times its uncertainty above neutral and `disagreement_weight` times its
    disagreement above neutral. So A goes before B whenever the weighted difference exceeds 1; unscored or
    unranked parents are neutral (all neutral: order unchanged). Uses no more randomness, and reorders only:
    it never adds a candidate."""
    n = len(shuffled)

    def doubt(c: Candidate) -> float:
        agreement_doubt = NEUTRAL_UNCERTAINTY if c.disagreement is None else c.disagreement
        return (weight * (uncertainty(c.score_gap) - NEUTRAL_UNCERTAINTY)
                + disagreement_weight * (agreement_doubt - NEUTRAL_UNCERTAINTY))

    keyed = [(place / n - doubt(c), place, c) for place, c in enumerate(shuffled)]
    return [c for _, _, c in sorted(keyed, key=lambda item: item[:2])]


def plan(candidates: Mapping[str, Sequence[Candidate]], weights: Mapping[str, float], config: TreeConfig,
         rng: random.Random) -> list[Candidate]:
    """Every candidate in the order to try: pools drawn by weight without replacement, each pool's
    candidates in `order_candidates` order."""
    remaining = {pool: items for pool, items in candidates.items() if items}
    ordered: list[Candidate] = []
    while remaining:
        pool = choose_pool(remaining, weights, rng)
        if pool is None:
            break
        ordered.extend(order_candidates(remaining.pop(pool), config, rng))
    return ordered


def lottery_pick(waiting: Sequence[tuple[object, float]], rng: random.Random) -> object | None:
    """Pick a waiting prompt's tree; weight = 1 + the author's reply acceptance rate (a tie-breaker
    that favours authors whose contributions did well)."""
    if not waiting:
        return None
    ids = [tree_id for tree_id, _ in waiting]
    return rng.choices(ids, weights=[1.0 + max(0.0, score) for _, score in waiting], k=1)[0]
