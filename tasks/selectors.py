"""Reads of trees, messages and tasks. No writes here."""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Case, Count, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.db.models.fields import CharField, IntegerField
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext

from oasst.errors import NotFound
from ranking import scoring
from tasks import score_selectors
from tasks.models import (
    EmojiReaction,
    Message,
    MessageReport,
    MessageRevision,
    MessageTree,
    Review,
    Role,
    Task,
    TaskType,
    TreeState,
)
from tasks.tree_manager import Candidate, Pool, TreeConfig, tree_config

CANDIDATES_PER_POOL = 12
POOL_COLUMNS = ("id", "tree_id", "role", "children_count", "reply_limit")


OPEN = Q(done=False, skipped=False, expired=False)


def open_tasks(**filters) -> QuerySet[Task]:
    return Task.objects.filter(OPEN, **filters)


LABEL_TYPES = (TaskType.LABEL_INITIAL_PROMPT, TaskType.LABEL_PROMPTER_REPLY, TaskType.LABEL_ASSISTANT_REPLY)
REPLY_TYPES = (TaskType.ASSISTANT_REPLY, TaskType.PROMPTER_REPLY)
RANK_TYPES = (TaskType.RANK_ASSISTANT_REPLIES, TaskType.RANK_PROMPTER_REPLIES, TaskType.RANK_INITIAL_PROMPTS)
POOL_TYPES = {Pool.REVIEW_PROMPT: LABEL_TYPES, Pool.REVIEW_REPLY: LABEL_TYPES, Pool.REPLY: REPLY_TYPES,
              Pool.RANKING: RANK_TYPES}


def _touched(types) -> Q:
    """A task of this kind on the item that is done, skipped or still open (expired ones don't
    count), or an open task of any kind on it: the item is not offered to the user again."""
    return Q(type__in=types, expired=False) | OPEN


def _not_touched_by(user, types) -> Exists:
    return Exists(Task.objects.filter(_touched(types), user=user, item=OuterRef("pk")))


def _pool_rows(qs: QuerySet, pool: str, config: TreeConfig) -> QuerySet:
    if pool == Pool.REPLY:  # the limit of the parent's tree, as copied when the tree was created
        reply_limit = Case(When(role=Role.PROMPTER, then=F("tree__max_children_count")),
                           default=Value(config.num_prompter_replies), output_field=IntegerField())
    else:
        reply_limit = Value(0, output_field=IntegerField())
    return qs.annotate(pool_name=Value(pool, output_field=CharField()), reply_limit=reply_limit) \
        .values_list(*POOL_COLUMNS, "pool_name")


def review_prompt_candidates(*, user, lang: str, config: TreeConfig) -> QuerySet:
    return (Message.objects
            .filter(tree__state=TreeState.INITIAL_PROMPT_REVIEW, tree__lang=lang, parent__isnull=True,
                    deleted=False, review_result__isnull=True,
                    review_count__lt=config.num_reviews_initial_prompt - F("reviews_pending"))
            .exclude(author=user).exclude(_not_touched_by(user, LABEL_TYPES))
            .order_by("created_at"))


def review_reply_candidates(*, user, lang: str, config: TreeConfig, role: str | None = None) -> QuerySet:
    qs = (Message.objects
          .filter(tree__state=TreeState.GROWING, tree__lang=lang, parent__isnull=False, deleted=False,
                  review_result__isnull=True, review_count__lt=config.num_reviews_reply - F("reviews_pending"))
          .exclude(author=user).exclude(_not_touched_by(user, LABEL_TYPES)))
    if role:
        qs = qs.filter(role=role)
    return qs.order_by("created_at")


def reply_candidates(*, user, lang: str, config: TreeConfig, parent_role: str | None = None) -> QuerySet:
    """Accepted parents in growing trees with a free reply slot (counting pending reply tasks)."""
    room = (Q(role=Role.PROMPTER, children_count__lt=F("tree__max_children_count") - F("replies_pending"))
            | Q(role=Role.ASSISTANT, children_count__lt=config.num_prompter_replies - F("replies_pending")))
    own_reply = Exists(Message.objects.filter(parent=OuterRef("pk"), author=user))
    qs = (Message.objects
          .filter(room, tree__state=TreeState.GROWING, tree__lang=lang, deleted=False, review_result=True,
                  depth__lt=F("tree__max_depth"),
                  tree__message_count__lt=F("tree__goal_tree_size") - F("tree__replies_pending"))
          .exclude(author=user).exclude(_not_touched_by(user, REPLY_TYPES)).exclude(own_reply))
    if parent_role:
        qs = qs.filter(role=parent_role)
    return qs.order_by("children_count", "created_at")


def ranking_candidates(*, user, lang: str, config: TreeConfig, parent_role: str | None = None) -> QuerySet:
    """Parents with two or more replies in trees being ranked, still short of rankings. A user never
    ranks a set that holds their own reply (ranking the replies to one's own prompt is fine)."""
    own_reply = Exists(Message.objects.filter(parent=OuterRef("pk"), author=user))
    roles = [Role.PROMPTER] + ([Role.ASSISTANT] if config.rank_prompter_replies else [])
    if parent_role:
        roles = [r for r in roles if r == parent_role]
    return (Message.objects
            .filter(tree__state=TreeState.RANKING, tree__lang=lang, deleted=False, review_result=True,
                    role__in=roles, children_count__gte=2,
                    ranking_count__lt=config.num_required_rankings - F("rankings_pending"))
            .exclude(_not_touched_by(user, RANK_TYPES)).exclude(own_reply)
            .order_by("created_at"))


def _limit_marker(qs: QuerySet, limit: int, pool: str) -> QuerySet:
    """One row iff qs has at least `limit` rows: lets a count check ride in the same statement."""
    return qs.annotate(
        tree_ref=F("id"), role_ref=Value("", output_field=CharField()),
        children_ref=Value(0, output_field=IntegerField()), limit_ref=Value(0, output_field=IntegerField()),
        pool_name=Value(pool, output_field=CharField()),
    ).values_list("id", "tree_ref", "role_ref", "children_ref", "limit_ref", "pool_name").order_by()[limit - 1:limit]


PROMPTS_FULL = "prompts_full"
PENDING_CAP = "pending_cap"
GROWING_FULL = "growing_full"
LOTTERY_WAITING = "lottery_waiting"


def _candidate_parts(*, user, lang: str, config: TreeConfig, pools: dict[str, str | None],
                     window_start) -> list[QuerySet]:
    parts: list[QuerySet] = [
        _limit_marker(open_tasks(user=user, created_at__gte=window_start), config.max_pending_tasks_per_user,
                      PENDING_CAP),
        _limit_marker(MessageTree.objects.filter(state=TreeState.GROWING, lang=lang),
                      config.max_active_trees, GROWING_FULL),
        _limit_marker(MessageTree.objects.filter(state=TreeState.PROMPT_LOTTERY_WAITING, lang=lang), 1,
                      LOTTERY_WAITING),
    ]
    for pool, role in pools.items():
        if pool == Pool.PROMPT:
            parts.append(_limit_marker(MessageTree.objects.filter(state=TreeState.INITIAL_PROMPT_REVIEW, lang=lang),
                                       config.max_initial_prompt_review, PROMPTS_FULL))
            continue
        qs = {
            Pool.REVIEW_PROMPT: lambda role: review_prompt_candidates(user=user, lang=lang, config=config),
            Pool.REVIEW_REPLY: lambda role: review_reply_candidates(user=user, lang=lang, config=config, role=role),
            Pool.REPLY: lambda role: reply_candidates(user=user, lang=lang, config=config, parent_role=role),
            Pool.RANKING: lambda role: ranking_candidates(user=user, lang=lang, config=config, parent_role=role),
        }[pool](role)
        parts.append(_pool_rows(qs, pool, config)[:CANDIDATES_PER_POOL])
    return parts


# The candidates statement is built by the ORM once per shape (pools, settings) with stand-in
# values for the user, the language and the time, and its SQL reused: building and compiling
# eight subqueries cost more CPU than PostgreSQL needs to run them.
_COMPILED: dict[tuple, tuple[str, tuple]] = {}
_USER = -7_000_000_001
_LANG = "\x1flang\x1f"
_SINCE = datetime(1901, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)


def _candidate_rows(*, user, lang: str, config: TreeConfig, pools: dict[str, str | None], window_start) -> list:
    if not connection.features.supports_slicing_ordering_in_compound:
        parts = _candidate_parts(user=user, lang=lang, config=config, pools=pools, window_start=window_start)
        return [row for part in parts for row in part]
    def build():
        parts = _candidate_parts(user=_USER, lang=_LANG, config=config, pools=pools, window_start=_SINCE)
        return parts[0].union(*parts[1:], all=True)

    sql, params = _compiled(("candidates", tuple(pools.items()), config), build, {_USER, _LANG, _SINCE})
    actual = {_USER: user.pk, _LANG: lang, _SINCE: window_start}
    with connection.cursor() as cursor:
        cursor.execute(sql, [actual.get(p, p) if isinstance(p, Hashable) else p for p in params])
        return cursor.fetchall()


def pending_cap_window_start(now, config: TreeConfig):
    return now - timedelta(seconds=config.pending_tasks_window_seconds)


_ITEM = uuid.UUID("1f1f1f1f-0000-4000-8000-1f1f1f1f1f1f")


def _claim_blockers_query(*, user, item, pool: str | None, window_start) -> QuerySet:
    held = OPEN & Q(created_at__gte=window_start)
    if pool is None:
        return Task.objects.filter(held, user=user).annotate(one=Value(1)).values("one").annotate(
            held=Count("pk"), touched=Value(0)).values("held", "touched")
    touched = Q(item_id=item) & _touched(POOL_TYPES[pool])
    return Task.objects.filter(held | touched, user=user).annotate(one=Value(1)).values("one").annotate(
        held=Count("pk", filter=held), touched=Count("pk", filter=touched)).values("held", "touched")


def claim_blockers(*, user, candidate: Candidate, config: TreeConfig, now) -> tuple[int, bool]:
    """Read again inside the claim, under the user's claim lock: how many open tasks the user holds
    in the cap's window, and whether they touched the candidate's item (see `_touched`). One
    statement over the user's open tasks and their tasks on this item (both indexed); on PostgreSQL
    compiled once per pool like the candidates (the ORM spent more CPU building it than it takes to run)."""
    window_start = pending_cap_window_start(now, config)
    pool = None if candidate.message_id is None else candidate.pool
    if connection.vendor != "postgresql":
        query = _claim_blockers_query(user=user, item=candidate.message_id, pool=pool, window_start=window_start)
        held, touched = next(iter(query.values_list("held", "touched")), (0, 0))
        return held, touched > 0
    sql, params = _compiled(("claim", pool), lambda: _claim_blockers_query(
        user=_USER, item=_ITEM, pool=pool, window_start=_SINCE), {_USER, _SINCE} | ({_ITEM} if pool else set()))
    actual = {_USER: user.pk, _ITEM: candidate.message_id, _SINCE: window_start}
    with connection.cursor() as cursor:
        cursor.execute(sql, [actual.get(p, p) if isinstance(p, Hashable) else p for p in params])
        held, touched = cursor.fetchone() or (0, 0)
    return held, touched > 0


def _compiled(key: tuple, build, stand_ins: set) -> tuple[str, tuple]:
    """The SQL and parameters of the queryset `build()` makes with stand-in values, compiled once per key."""
    key = (connection.vendor, *key)
    compiled = _COMPILED.get(key)
    if compiled is None:
        sql, params = build().query.sql_with_params()
        if not stand_ins <= {p for p in params if isinstance(p, Hashable)}:
            raise RuntimeError(f"the statement {key} no longer takes its stand-in values as parameters")
        compiled = _COMPILED[key] = (sql, tuple(params))
    return compiled


def task_candidates(*, user, lang: str, config: TreeConfig, pools: dict[str, str | None],
                    now=None) -> tuple[dict[str, list[Candidate]], set[str]]:
    """Candidates per pool, and markers: PENDING_CAP (the user holds the maximum of open tasks),
    PROMPTS_FULL (too many prompts await review), GROWING_FULL / LOTTERY_WAITING (lottery state).

    `pools` maps each wanted pool to an optional role filter. On PostgreSQL everything is one
    UNION ALL statement; SQLite cannot limit the parts of a compound query, so it runs one each.
    """
    now = now or timezone.now()
    window_start = pending_cap_window_start(now, config)
    rows = _candidate_rows(user=user, lang=lang, config=config, pools=pools, window_start=window_start)

    candidates: dict[str, list[Candidate]] = {pool: [] for pool in pools}
    markers: set[str] = set()
    for message_id, tree_id, role, children_count, reply_limit, pool in rows:
        if pool in (PENDING_CAP, PROMPTS_FULL, GROWING_FULL, LOTTERY_WAITING):
            markers.add(pool)
        else:
            candidates[pool].append(Candidate(pool=pool, message_id=message_id, tree_id=tree_id, role=role,
                                              children_count=children_count, reply_limit=reply_limit))
    if Pool.PROMPT in pools and PROMPTS_FULL not in markers:
        candidates[Pool.PROMPT].append(Candidate(pool=Pool.PROMPT))
    ranking, with_disagreement = candidates.get(Pool.RANKING), config.weight_ranking_disagreement > 0
    if ranking and (config.weight_ranking_uncertainty > 0 or with_disagreement):  # 1-2 more queries, only when on
        doubts = score_selectors.model_doubts((c.message_id for c in ranking), with_disagreement=with_disagreement)
        candidates[Pool.RANKING] = [replace(c, score_gap=gap, disagreement=disagreement) for c in ranking
                                    for gap, disagreement in [doubts.get(c.message_id, (None, None))]]
    return candidates, markers


def pools_for(task_type: str, config: TreeConfig) -> dict[str, str | None]:
    """The pools (with a role filter) a request for this task type draws from."""
    if task_type == "random":
        pools = {Pool.RANKING: None, Pool.REVIEW_REPLY: None, Pool.REVIEW_PROMPT: None, Pool.REPLY: None,
                 Pool.PROMPT: None}
        return pools
    return {
        TaskType.INITIAL_PROMPT: {Pool.PROMPT: None},
        TaskType.ASSISTANT_REPLY: {Pool.REPLY: Role.PROMPTER},
        TaskType.PROMPTER_REPLY: {Pool.REPLY: Role.ASSISTANT},
        TaskType.RANK_ASSISTANT_REPLIES: {Pool.RANKING: Role.PROMPTER},
        TaskType.RANK_PROMPTER_REPLIES: {Pool.RANKING: Role.ASSISTANT},
        TaskType.LABEL_INITIAL_PROMPT: {Pool.REVIEW_PROMPT: None},
        TaskType.LABEL_ASSISTANT_REPLY: {Pool.REVIEW_REPLY: Role.ASSISTANT},
        TaskType.LABEL_PROMPTER_REPLY: {Pool.REVIEW_REPLY: Role.PROMPTER},
    }[task_type]


def tree_messages(tree_id) -> list[Message]:
    """Every message of a tree with the fields a task or an export needs (trees are small)."""
    return list(Message.objects.filter(tree_id=tree_id).order_by("depth", "created_at"))


def conversation_to(messages_by_id: dict, message_id) -> list[Message]:
    """The path from the root to the message, root first."""
    path = []
    current = messages_by_id.get(message_id)
    while current is not None:
        path.append(current)
        current = messages_by_id.get(current.parent_id)
    return path[::-1]


def extendible_parent_exists(tree: MessageTree, config: TreeConfig) -> bool:
    room = (Q(role=Role.PROMPTER, children_count__lt=tree.max_children_count)
            | Q(role=Role.ASSISTANT, children_count__lt=config.num_prompter_replies))
    return Message.objects.filter(room, tree=tree, deleted=False, review_result=True,
                                  depth__lt=tree.max_depth).exists()


def task_availability(*, user, lang: str, config: TreeConfig) -> dict[str, int]:
    """How many items each enabled task type has for this user right now."""
    from django.db.models import Count

    def by_role(qs: QuerySet) -> dict[str, int]:
        return dict(qs.order_by().values_list("role").annotate(n=Count("id")))

    review_replies = by_role(review_reply_candidates(user=user, lang=lang, config=config))
    replies = by_role(reply_candidates(user=user, lang=lang, config=config))
    rankings = by_role(ranking_candidates(user=user, lang=lang, config=config))
    prompts_in_review = MessageTree.objects.filter(state=TreeState.INITIAL_PROMPT_REVIEW, lang=lang).count()
    counts = {
        TaskType.INITIAL_PROMPT: int(prompts_in_review < config.max_initial_prompt_review),
        TaskType.LABEL_INITIAL_PROMPT: review_prompt_candidates(user=user, lang=lang, config=config).count(),
        TaskType.LABEL_ASSISTANT_REPLY: review_replies.get(Role.ASSISTANT, 0),
        TaskType.LABEL_PROMPTER_REPLY: review_replies.get(Role.PROMPTER, 0),
        TaskType.ASSISTANT_REPLY: replies.get(Role.PROMPTER, 0),
        TaskType.PROMPTER_REPLY: replies.get(Role.ASSISTANT, 0),
        TaskType.RANK_ASSISTANT_REPLIES: rankings.get(Role.PROMPTER, 0),
    }
    if config.rank_prompter_replies:
        counts[TaskType.RANK_PROMPTER_REPLIES] = rankings.get(Role.ASSISTANT, 0)
    return {str(task_type): n for task_type, n in counts.items()}


def moderation_statistics(*, days: int = 14) -> dict:
    """Figures for the moderators' statistics page."""
    since = timezone.now() - timedelta(days=days)
    per_state = list(MessageTree.objects.values("lang", "state").annotate(n=Count("id")).order_by("lang", "state"))
    messages_per_day = dict(Message.objects.filter(created_at__gte=since).annotate(day=TruncDate("created_at"))
                            .values_list("day").annotate(n=Count("id")).order_by("day"))
    tasks_per_day = dict(Task.objects.filter(created_at__gte=since).annotate(day=TruncDate("created_at"))
                         .values_list("day").annotate(n=Count("id")).order_by("day"))
    today = timezone.now().date()
    day_list = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    peak = max([*messages_per_day.values(), *tasks_per_day.values(), 1])
    chart = [{"day": day, "messages": messages_per_day.get(day, 0), "tasks": tasks_per_day.get(day, 0),
              "messages_pct": round(100 * messages_per_day.get(day, 0) / peak),
              "tasks_pct": round(100 * tasks_per_day.get(day, 0) / peak)} for day in day_list]
    active = Message.objects.filter(created_at__gte=timezone.now() - timedelta(days=7)).values("author_id") \
        .distinct().count()
    return {"per_state": per_state, "chart": chart, "active_contributors": active,
            "settings": sorted(asdict(tree_config()).items())}


def visible_messages() -> QuerySet[Message]:
    """The messages contributors see and act on. A deleted message is as absent as an unknown id on
    every route (the same 404), so no answer tells that it exists."""
    return Message.objects.filter(deleted=False)


def visible_message(message_id) -> Message:
    try:
        return visible_messages().get(pk=message_id)
    except (Message.DoesNotExist, ValueError, TypeError):
        raise NotFound(gettext("No such message."), code="message_not_found") from None


def troll_counts(*, frame: str, now=None, limit: int = 100, user_id: int | None = None) -> list[dict]:
    """The users whose messages drew the most red flags, downvotes and bad labels in the frame."""
    now = now or timezone.now()
    span = scoring.FRAMES[frame]
    messages = Message.objects.filter(author__isnull=False)
    reactions = EmojiReaction.objects.filter(message__author__isnull=False, emoji__in=["+1", "-1", "red_flag"])
    if span:
        messages = messages.filter(created_at__gte=now - span)
        reactions = reactions.filter(message__created_at__gte=now - span)
    if user_id is not None:
        messages = messages.filter(author_id=user_id)
        reactions = reactions.filter(message__author_id=user_id)

    labels = ("lang_mismatch", "not_appropriate", "pii", "hate_speech", "sexual_content", "political_content")
    counts: dict = {}
    for row in messages.values("author_id").annotate(
            spam_prompts=Count("id", filter=Q(parent__isnull=True, review_result=False)),
            **{label: Count("id", filter=Q(**{f"labels__{label}__value__gte": 0.5})) for label in labels},
    ).order_by():
        counts[row.pop("author_id")] = row
    names = {"+1": "upvotes", "-1": "downvotes", "red_flag": "red_flags"}
    for author_id, emoji, n in (reactions.values_list("message__author_id", "emoji").annotate(n=Count("id"))
                                .order_by()):
        counts.setdefault(author_id, {})[names[emoji]] = n
    entries = []
    for author_id, row in counts.items():
        row = {name: row.get(name, 0) for name in scoring.TROLL_WEIGHTS}
        points = scoring.troll_score(row)
        if points > 0:
            entries.append({"user_id": author_id, "troll_score": points, **row})
    entries.sort(key=lambda entry: (-entry["troll_score"], entry["user_id"]))
    return entries[:limit]


def user_data_sections(sender=None, *, user, **kwargs) -> dict:
    """The tasks app's part of "download my data" (receiver of oasst.signals.user_data_requested,
    connected in tasks.apps): the user's messages with their revisions, reviews, reactions, reports,
    tasks and the edits they made as a moderator."""
    messages = list(Message.objects.filter(author=user).order_by("created_at").values(
        "id", "tree_id", "tree__state", "parent_id", "role", "text", "lang", "depth", "created_at", "client_id",
        "review_count", "review_result", "rank", "deleted", "synthetic", "model_name", "emojis", "labels",
        "red_flags", "edited",
    ))
    revisions: dict = {}
    for revision in MessageRevision.objects.filter(message__author=user).order_by("created_at").values(
            "message_id", "text", "created_at"):
        revisions.setdefault(revision.pop("message_id"), []).append(revision)
    for message in messages:
        message["tree_state"] = message.pop("tree__state")
        message["revisions"] = revisions.get(message["id"], [])
    return {
        "messages": messages,
        "reviews": list(Review.objects.filter(user=user).order_by("created_at").values(
            "message_id", "task_id", "mode", "labels", "text", "report", "created_at")),
        "reactions": list(EmojiReaction.objects.filter(user=user).order_by("created_at").values(
            "message_id", "emoji", "created_at")),
        "message_reports": list(MessageReport.objects.filter(user=user).order_by("created_at", "pk").values(
            "message_id", "reason", "created_at")),
        "tasks": list(Task.objects.filter(user=user).order_by("created_at").values(
            "id", "type", "lang", "item_id", "tree_id", "created_at", "expires_at", "acked_at",
            "skipped", "skip_reason", "done", "done_at", "expired")),
        "message_edits": list(MessageRevision.objects.filter(editor=user).order_by("created_at", "pk").values(
            "message_id", "created_at")),
    }
