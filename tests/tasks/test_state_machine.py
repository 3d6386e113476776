"""A Hypothesis state machine: random users apply random sequences of actions through the
services (requests, submissions, skips, reactions, expiry, halts), and after every step the
trees, messages and tasks must still satisfy the invariants of SPEC's tree and task rules."""

from __future__ import annotations

import contextlib
import random
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models.signals import pre_save
from django.test import TestCase, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from oasst.errors import ServiceError
from ranking.models import Ranking
from tasks import services, tree_manager
from tasks.models import Emoji, Message, MessageTree, Review, Role, Task, TaskType, TreeState
from tasks.services import LABEL_TASKS, RANK_TASKS
from tests.factories import UserFactory

USERS = 5
REPLY_TASKS = {TaskType.PROMPTER_REPLY, TaskType.ASSISTANT_REPLY}
TEXT_TASKS = REPLY_TASKS | {TaskType.INITIAL_PROMPT}
REQUEST_TYPES = ["random", "random", *TaskType.values]
EMOJIS = [Emoji.RED_FLAG, Emoji.RED_FLAG, Emoji.PLUS_ONE, Emoji.MINUS_ONE, Emoji.HEART_EYES]
KIND = {**dict.fromkeys(LABEL_TASKS, "review"), **dict.fromkeys(RANK_TASKS, "ranking"),
        **dict.fromkeys(REPLY_TASKS, "reply"), TaskType.INITIAL_PROMPT: "prompt"}
SCORING_STATES = {TreeState.READY_FOR_SCORING, TreeState.SCORING_FAILED}

# Filled across all examples of a run, to prove the machine reaches the interesting states.
REACHED: Counter = Counter()


class TransitionLog:
    """Every write of a tree's state, seen by a pre_save handler with the state stored before it."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.edges: list[tuple] = []
        self.illegal: list[str] = []
        self.halt_escapes: list[str] = []
        self.lottery_overflows: list[str] = []
        self.rule = ""

    def pre_save(self, sender, instance, update_fields=None, **kwargs):
        if instance._state.adding or (update_fields is not None and "state" not in update_fields):
            return
        stored = MessageTree.objects.filter(pk=instance.pk).values_list("state", "halted_from_state").first()
        if stored is None or stored[0] == instance.state:
            return
        old, halted_from = stored
        self.edges.append((instance.pk, old, instance.state))
        if not tree_manager.transition_allowed(old, instance.state):
            self.illegal.append(f"tree {instance.pk}: {old} -> {instance.state} (in {self.rule})")
        if (old, instance.state) == (TreeState.PROMPT_LOTTERY_WAITING, TreeState.GROWING):
            growing = MessageTree.objects.filter(state=TreeState.GROWING, lang=instance.lang).count()
            if growing >= tree_manager.tree_config().max_active_trees:
                self.lottery_overflows.append(f"tree {instance.pk} activated while {growing} trees grow")
        if old == TreeState.HALTED_BY_MODERATOR and (self.rule != "resume" or instance.state != halted_from):
            self.halt_escapes.append(f"tree {instance.pk} left halted_by_moderator for {instance.state} in "
                                     f"{self.rule!r} (halted from {halted_from})")


class TreeMachine(RuleBasedStateMachine):
    def __init__(self, users, log: TransitionLog):
        super().__init__()
        self.users = users
        self.log = log
        log.reset()
        self.override = None
        self.config: tree_manager.TreeConfig | None = None
        self.task_ids: list = []  # in creation order: deterministic, unlike uuid order
        self.message_ids: list = []
        self.client_ids: dict = {}  # task id -> (client_id, message id)
        self.last_state: dict = {}
        self.texts = 0
        # Each example runs in a savepoint that teardown rolls back: the next one starts empty.
        self.atomic = transaction.atomic()
        self.atomic.__enter__()

    def teardown(self):
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)
        if self.override is not None:
            self.override.disable()

    @initialize(goal=st.integers(3, 5), reviews_prompt=st.integers(1, 2), reviews_reply=st.integers(1, 2),
                rankings=st.integers(1, 2), depth=st.integers(2, 3), children=st.integers(2, 3),
                max_skip=st.sampled_from([25, 3]), max_pending=st.sampled_from([8, 3]))
    def configure(self, goal, reviews_prompt, reviews_reply, rankings, depth, children, max_skip, max_pending):
        from django.conf import settings as django_settings

        overrides = dict(goal_tree_size=goal, num_reviews_initial_prompt=reviews_prompt,
                         num_reviews_reply=reviews_reply, num_required_rankings=rankings, max_tree_depth=depth,
                         max_children_count=children, max_active_trees=2, auto_mod_red_flags=2,
                         auto_mod_max_skip_reply=max_skip, max_pending_tasks_per_user=max_pending,
                         p_full_labeling_review_reply_prompter=0.5)
        self.override = override_settings(OASST={**django_settings.OASST, **overrides})
        self.override.enable()
        self.config = tree_manager.tree_config()

    # --- helpers --------------------------------------------------------------------------------

    def call(self, rule_name, service, **kwargs):
        """Run one service call as a request would: on_commit callbacks (lottery, scoring) run after
        it; a ServiceError is a refusal and a valid outcome, anything else fails the test."""
        self.log.rule = rule_name
        with TestCase.captureOnCommitCallbacks(execute=True):
            try:
                return service(**kwargs)
            except ServiceError as error:
                REACHED[f"refused:{error.code}"] += 1
                return None

    def pick_task(self, data, types, allow_closed=True):
        """Mostly an open task of these types; now and then any, to exercise the refusals."""
        tasks = {t.pk: t for t in Task.objects.filter(pk__in=self.task_ids, type__in=types)}
        ordered = [tasks[pk] for pk in self.task_ids if pk in tasks]
        open_ones = [t for t in ordered if t.is_open]
        if allow_closed and ordered and (not open_ones or data.draw(st.integers(0, 9), "any task") == 9):
            return data.draw(st.sampled_from(ordered), "task")
        return data.draw(st.sampled_from(open_ones), "task") if open_ones else None

    def pick_message(self, data):
        """Mostly a reply, often one someone holds an open task on, where moderation races the work."""
        worked_on = set(Task.objects.filter(done=False, skipped=False, expired=False, item__isnull=False)
                        .values_list("item_id", flat=True))
        roots = set(self.tree_ids())
        replies = [pk for pk in self.message_ids if pk not in roots]
        busy = [pk for pk in replies if pk in worked_on]
        choice = data.draw(st.integers(0, 4), "which messages")
        pool = busy if busy and choice < 2 else replies if replies and choice < 4 else self.message_ids
        return data.draw(st.sampled_from(pool), "message")

    def submitter(self, data, task):
        if data.draw(st.integers(0, 9), "foreign submitter") == 9:
            return data.draw(st.sampled_from(self.users), "user")
        return next(u for u in self.users if u.pk == task.user_id)

    def text(self):
        self.texts += 1
        return f"  Message number {self.texts}.  "

    def request(self, user_index, task_type, lang, seed):
        task = self.call("request", services.task_request, user=self.users[user_index], task_type=task_type,
                         lang=lang, rng=random.Random(seed))
        if task is not None:
            self.task_ids.append(task.pk)
            assert task.user_id == self.users[user_index].pk and task.lang == lang
            assert task_type == "random" or task.type == task_type, f"asked for {task_type}, got {task.type}"
        return task

    def write(self, user, task, client_id=""):
        message = self.call("submit_text", services.text_submit, user=user, task_id=task.pk, text=self.text(),
                            client_id=client_id)
        if message is not None:
            self.message_ids.append(message.pk)
            if client_id:
                self.client_ids[task.pk] = (client_id, message.pk)

    def labels_for(self, data, task):
        valid, mandatory = task.payload.get("valid_labels", []), task.payload.get("mandatory_labels", [])
        labels = {"spam": 1 if data.draw(st.integers(0, 4), "spam") == 4 else 0}
        if "lang_mismatch" in valid and data.draw(st.integers(0, 7), "lang mismatch") == 7:
            labels["lang_mismatch"] = 1
        if "quality" in valid:
            labels["quality"] = data.draw(st.sampled_from(tree_manager.LIKERT_VALUES), "quality")
        if data.draw(st.integers(0, 19), "invalid labels") == 19:
            labels = {name: 0.5 for name in valid if name not in mandatory}  # refused: spam is missing
        return labels

    def ranking_for(self, data, task):
        offered = [reply["id"] for reply in task.payload.get("reply_messages", [])]
        choice = data.draw(st.integers(0, 9), "ranking kind")
        if choice == 9:
            return {"not_rankable": True}
        if choice == 8:
            return {"ranking": offered[1:]}  # refused: not a permutation of the offered replies
        return {"ranking": data.draw(st.permutations(offered), "ranking")}

    # --- rules ----------------------------------------------------------------------------------

    @rule(user=st.integers(0, USERS - 1), task_type=st.sampled_from(REQUEST_TYPES),
          lang=st.sampled_from(["en", "en", "en", "de"]), seed=st.integers(0, 2**16))
    def request_task(self, user, task_type, lang, seed):
        self.request(user, task_type, lang, seed)

    @rule(user=st.integers(0, USERS - 1), task_type=st.sampled_from(["random", "random", *TaskType.values]),
          seed=st.integers(0, 2**16), data=st.data())
    def request_and_do(self, user, task_type, seed, data):
        """A contributor's usual step: ask for a task and submit it right away."""
        self.do(user, task_type, seed, data)

    def do(self, user, task_type, seed, data):
        task = self.request(user, task_type, "en", seed)
        if task is None:
            return
        if task.type in TEXT_TASKS:
            self.write(self.users[user], task)
        elif task.type in LABEL_TASKS:
            self.call("submit_labels", services.labels_submit, user=self.users[user], task_id=task.pk,
                      labels=self.labels_for(data, task))
        else:
            self.call("submit_ranking", services.ranking_submit, user=self.users[user], task_id=task.pk,
                      **self.ranking_for(data, task))

    @rule(seed=st.integers(0, 2**16), data=st.data())
    def work_round(self, seed, data):
        """Every user in turn asks for a random task and does it: moves trees forward quickly."""
        for user in range(USERS):
            if data.draw(st.integers(0, 3), "keep the task open") == 3:  # held open: moderation may race it
                self.request(user, "random", "en", seed + user)
            else:
                self.do(user, "random", seed + user, data)

    @rule(data=st.data())
    def submit_text(self, data):
        task = self.pick_task(data, TEXT_TASKS)
        if task is not None:
            client_id = data.draw(st.sampled_from(["", f"client-{len(self.task_ids)}"]), "client id")
            self.write(self.submitter(data, task), task, client_id=client_id)

    @rule(data=st.data())
    def retry_text(self, data):
        """A retried submission with the same client_id returns the message already created."""
        if not self.client_ids:
            return
        task_id = data.draw(st.sampled_from(sorted(self.client_ids, key=self.task_ids.index)), "retried task")
        client_id, message_id = self.client_ids[task_id]
        task = Task.objects.get(pk=task_id)
        before = Message.objects.count()
        message = self.call("retry_text", services.text_submit, user=self.submitter(data, task),
                            task_id=task_id, text=self.text(), client_id=client_id)
        assert message is None or message.pk == message_id, "a retry with the same client_id made a new message"
        assert Message.objects.count() == before, "a retried submission created a message"

    @rule(data=st.data())
    def submit_labels(self, data):
        task = self.pick_task(data, LABEL_TASKS)
        if task is None:
            return
        user = self.submitter(data, task)
        self.call("submit_labels", services.labels_submit, user=user, task_id=task.pk,
                  labels=self.labels_for(data, task), report=data.draw(st.integers(0, 9), "report") == 9)

    @rule(data=st.data())
    def submit_ranking(self, data):
        task = self.pick_task(data, RANK_TASKS)
        if task is not None:
            self.call("submit_ranking", services.ranking_submit, user=self.submitter(data, task), task_id=task.pk,
                      **self.ranking_for(data, task))

    @rule(data=st.data())
    def skip_task(self, data):
        task = self.pick_task(data, TaskType.values)
        if task is not None:
            self.call("skip", services.task_nack, user=self.submitter(data, task), task_id=task.pk,
                      reason="not for me")

    @rule(user=st.integers(0, USERS - 1), emoji=st.sampled_from(EMOJIS),
          op=st.sampled_from(["add", "add", "add", "remove"]), data=st.data())
    def react(self, user, emoji, op, data):
        if self.message_ids:
            message_id = self.pick_message(data)
            self.call("react", services.emoji_set, user=self.users[user], message_id=message_id, emoji=emoji, op=op)

    @rule(data=st.data())
    def red_flag_pile_on(self, data):
        """Enough users red-flag one message for auto-moderation to act (on a prompt: abort the tree;
        on a reply: delete its subtree)."""
        if not self.message_ids:
            return
        message_id = self.pick_message(data)
        author_id = Message.objects.filter(pk=message_id).values_list("author_id", flat=True).get()
        flaggers = [u for u in self.users if u.pk != author_id][:self.config.auto_mod_red_flags]
        for user in flaggers:
            self.call("react", services.emoji_set, user=user, message_id=message_id, emoji=Emoji.RED_FLAG, op="add")

    @rule(data=st.data())
    def expire_tasks(self, data):
        """Expire every open task created up to a chosen one (they all live equally long), or all."""
        task = self.pick_task(data, TaskType.values, allow_closed=False)
        if task is None or data.draw(st.booleans(), "expire all"):
            now = timezone.now() + timedelta(seconds=self.config.task_valid_for_seconds + 60)
        else:
            now = task.expires_at
        self.call("expire", services.tasks_expire, now=now)

    @rule(data=st.data())
    def halt(self, data):
        if self.message_ids and data.draw(st.integers(0, 3), "halt now") == 3:  # rarer: halts stall the trees
            tree_id = data.draw(st.sampled_from(self.tree_ids()), "tree")
            self.call("halt", services.tree_halt, tree_id=tree_id)

    @rule(data=st.data())
    def resume(self, data):
        if self.message_ids:
            halted = set(MessageTree.objects.filter(state=TreeState.HALTED_BY_MODERATOR).values_list("pk", flat=True))
            trees = [pk for pk in self.tree_ids() if pk in halted]
            if not trees or data.draw(st.integers(0, 3), "any tree") == 3:
                trees = self.tree_ids()
            tree_id = data.draw(st.sampled_from(trees), "tree")
            self.call("resume", services.tree_resume, tree_id=tree_id)

    def tree_ids(self):
        roots = set(Message.objects.filter(parent__isnull=True).values_list("pk", flat=True))
        return [pk for pk in self.message_ids if pk in roots]

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self):
        if self.config is None:
            return
        snapshot = Snapshot(self.config)
        check_structure(snapshot)
        check_reservations(snapshot)
        check_who_did_what(snapshot)
        check_counters(snapshot)
        check_task_results(snapshot)
        self.check_transitions(snapshot)
        check_progress(snapshot)
        check_ranks(snapshot)
        for tree in snapshot.trees.values():
            REACHED[tree.state] += 1
        REACHED["deleted"] += sum(m.deleted for m in snapshot.messages.values())

    def check_transitions(self, snapshot):
        assert not self.log.illegal, f"tree states moved off TRANSITIONS: {self.log.illegal}"
        assert not self.log.lottery_overflows, f"the lottery exceeded max_active_trees: {self.log.lottery_overflows}"
        assert not self.log.halt_escapes, f"a halted tree moved without tree_resume: {self.log.halt_escapes}"
        edges = defaultdict(set)
        for tree_id, old, new in self.log.edges:
            edges[tree_id].add((old, new))
        for tree in snapshot.trees.values():
            start = self.last_state.get(tree.pk, TreeState.INITIAL_PROMPT_REVIEW)
            reachable, frontier = {start}, [start]
            while frontier:
                state = frontier.pop()
                for old, new in edges[tree.pk]:
                    if old == state and new not in reachable:
                        reachable.add(new)
                        frontier.append(new)
            assert tree.state in reachable, (
                f"tree {tree.pk} went from {start} to {tree.state} without a legal sequence of state writes "
                f"(writes seen: {sorted(edges[tree.pk])})")
            self.last_state[tree.pk] = tree.state
        self.log.edges.clear()


class Snapshot:
    """Every row the invariants need, read once per step (the trees are tiny)."""

    def __init__(self, config):
        self.config = config
        self.trees = {t.pk: t for t in MessageTree.objects.all()}
        self.messages = {m.pk: m for m in Message.objects.all()}
        self.tasks = list(Task.objects.all())
        self.reviews = list(Review.objects.values_list("message_id", "user_id", "task_id"))
        self.rankings = list(Ranking.objects.values_list("parent_id", "user_id", "task_id"))
        self.children = defaultdict(list)
        for m in self.messages.values():
            if m.parent_id:
                self.children[m.parent_id].append(m)
        self.open_by_item = defaultdict(Counter)  # item -> kind -> open tasks
        for task in self.tasks:
            if task.is_open and task.item_id:
                self.open_by_item[task.item_id][KIND[task.type]] += 1

    @staticmethod
    def live(message) -> bool:
        return not message.deleted and message.review_result is not False

    def live_children(self, message_id) -> int:
        return sum(self.live(child) for child in self.children[message_id])

    def reply_limit(self, message) -> int:
        tree = self.trees[message.tree_id]
        return tree.max_children_count if message.role == Role.PROMPTER else self.config.num_prompter_replies

    def reviews_required(self, message) -> int:
        return self.config.reviews_required(is_root=message.parent_id is None)


def check_structure(s: Snapshot):
    roots = Counter()
    for m in s.messages.values():
        tree = s.trees[m.tree_id]
        if m.parent_id is None:
            roots[m.tree_id] += 1
            assert m.role == Role.PROMPTER, f"root {m.pk} has role {m.role}, not prompter"
            assert m.depth == 0, f"root {m.pk} has depth {m.depth}"
            continue
        parent = s.messages[m.parent_id]
        assert parent.tree_id == m.tree_id, f"message {m.pk} is in another tree than its parent"
        assert m.role != parent.role, f"message {m.pk} has the role of its parent ({m.role})"
        assert m.depth == parent.depth + 1, f"message {m.pk}: depth {m.depth}, parent depth {parent.depth}"
        assert m.depth <= tree.max_depth, f"message {m.pk}: depth {m.depth} > the tree's max_depth {tree.max_depth}"
        assert parent.review_result is True, f"message {m.pk} replies to {parent.pk}, which is not accepted"
    for tree in s.trees.values():
        assert roots[tree.pk] == 1, f"tree {tree.pk} has {roots[tree.pk]} roots"


def check_reservations(s: Snapshot):
    """An item is never out with more users than it still needs; a pending task counts."""
    for m in s.messages.values():
        pending = s.open_by_item[m.pk]
        limit = s.reply_limit(m)
        children = s.live_children(m.pk)
        assert children + pending["reply"] <= limit, (
            f"{m.role} message {m.pk} has {children} live replies + {pending['reply']} pending reply tasks, "
            f"more than its limit {limit}")
        needed = s.reviews_required(m) - m.review_count if m.review_result is None else 0
        assert pending["review"] <= max(needed, 0), (
            f"message {m.pk} ({m.review_state}, {m.review_count} reviews) has {pending['review']} open review "
            f"tasks but needs {needed}")
        needed = s.config.num_required_rankings - m.ranking_count
        assert pending["ranking"] <= max(needed, 0), (
            f"parent {m.pk} has {m.ranking_count} rankings and {pending['ranking']} open ranking tasks; "
            f"{s.config.num_required_rankings} are required")
    for tree in s.trees.values():
        live = sum(s.live(m) for m in s.messages.values() if m.tree_id == tree.pk)
        pending = sum(1 for t in s.tasks if t.tree_id == tree.pk and t.is_open and t.type in REPLY_TASKS)
        assert live + pending <= tree.goal_tree_size, (
            f"tree {tree.pk} has {live} live messages + {pending} pending reply tasks > goal {tree.goal_tree_size}")


def check_who_did_what(s: Snapshot):
    reviews = Counter((message_id, user_id) for message_id, user_id, _ in s.reviews)
    for (message_id, user_id), n in reviews.items():
        assert s.messages[message_id].author_id != user_id, f"user {user_id} reviewed their own message {message_id}"
        assert n == 1, f"user {user_id} reviewed message {message_id} {n} times"
    rankings = Counter((parent_id, user_id) for parent_id, user_id, _ in s.rankings)
    for (parent_id, user_id), n in rankings.items():
        authors = {child.author_id for child in s.children[parent_id]}
        assert user_id not in authors, f"user {user_id} ranked the replies to {parent_id}, one of them their own"
        assert n == 1, f"user {user_id} ranked the replies to {parent_id} {n} times"
    replies = Counter((m.parent_id, m.author_id) for m in s.messages.values() if m.parent_id)
    for (parent_id, user_id), n in replies.items():
        assert n == 1, f"user {user_id} replied {n} times to {parent_id}"
    handed = Counter()
    for task in s.tasks:
        if task.item_id is None:
            continue
        item = s.messages[task.item_id]
        assert task.tree_id == item.tree_id, f"task {task.pk} names another tree than its item's"
        assert task.lang == s.trees[task.tree_id].lang, f"task {task.pk} ({task.lang}) is on a tree in another lang"
        if task.type in LABEL_TASKS:
            assert item.author_id != task.user_id, f"user {task.user_id} was handed a review of their own message"
        if task.type in RANK_TASKS:
            assert task.user_id not in {c.author_id for c in s.children[item.pk]}, (
                f"user {task.user_id} was handed a ranking of replies to {item.pk} that include their own")
        if not task.expired:
            handed[(task.user_id, task.item_id, KIND[task.type])] += 1
    for (user_id, item_id, kind), n in handed.items():
        assert n == 1, f"user {user_id} was handed {n} {kind} tasks on {item_id} (done, skipped or open)"


def check_counters(s: Snapshot):
    """The stored counters equal a recount from the rows (see services.tree_counters_recompute)."""
    reviews = Counter(message_id for message_id, _, _ in s.reviews)
    rankings = Counter(parent_id for parent_id, _, _ in s.rankings)
    for m in s.messages.values():
        pending = s.open_by_item[m.pk]
        expected = {"children_count": s.live_children(m.pk), "reviews_pending": pending["review"],
                    "rankings_pending": pending["ranking"], "replies_pending": pending["reply"],
                    "review_count": reviews[m.pk], "ranking_count": rankings[m.pk]}
        stored = {name: getattr(m, name) for name in expected}
        assert stored == expected, f"message {m.pk} counters {stored} differ from the recount {expected}"
    for tree in s.trees.values():
        live = [m for m in s.messages.values() if m.tree_id == tree.pk and s.live(m)]
        expected = {"message_count": len(live), "accepted_count": sum(m.review_result is True for m in live),
                    "awaiting_review": sum(m.review_result is None for m in live),
                    "replies_pending": sum(1 for t in s.tasks
                                           if t.tree_id == tree.pk and t.is_open and t.type in REPLY_TASKS)}
        stored = {name: getattr(tree, name) for name in expected}
        assert stored == expected, f"tree {tree.pk} ({tree.state}) counters {stored} differ from the recount {expected}"


def check_task_results(s: Snapshot):
    """Exactly one result per done task: no message, review or ranking is created twice for a task."""
    results = Counter(m.task_id for m in s.messages.values() if m.task_id)
    results.update(task_id for _, _, task_id in s.reviews if task_id)
    results.update(task_id for _, _, task_id in s.rankings if task_id)
    for task in s.tasks:
        expected = 1 if task.done else 0
        assert results[task.pk] == expected, (
            f"{task.type} task {task.pk} (done={task.done}) has {results[task.pk]} results, expected {expected}")


def check_progress(s: Snapshot):
    """A tree in an active state can still move on: no tree is stuck with nothing left to do."""
    for tree in s.trees.values():
        messages = [m for m in s.messages.values() if m.tree_id == tree.pk]
        live = [m for m in messages if s.live(m)]
        assert tree.state not in SCORING_STATES, f"tree {tree.pk} rests in {tree.state} (scoring runs eagerly)"
        if tree.state == TreeState.GROWING:
            awaiting = sum(m.review_result is None for m in live)
            pending = sum(s.open_by_item[m.pk]["reply"] for m in messages)
            accepted = sum(m.review_result is True for m in live)
            extendible = [m for m in live if m.review_result is True and m.depth < tree.max_depth
                          and s.live_children(m.pk) < s.reply_limit(m)]
            finished = tree_manager.growth_finished(accepted_count=accepted, awaiting_review=awaiting,
                                                    replies_pending=pending, goal=tree.goal_tree_size,
                                                    extendible_parents=len(extendible))
            assert not finished, (f"tree {tree.pk} is still growing but its growth is finished ({accepted} "
                                  f"accepted, {len(extendible)} extendible parents): nothing will move it on")
        if tree.state == TreeState.RANKING:
            short = [m for m in live if m.review_result is True and m.role == Role.PROMPTER
                     and s.live_children(m.pk) >= 2 and m.ranking_count < s.config.num_required_rankings]
            assert short, f"tree {tree.pk} is in ranking but no parent needs a ranking: nothing will move it on"


def check_ranks(s: Snapshot):
    for parent_id, children in s.children.items():
        ranks = sorted(c.rank for c in children if c.rank is not None)
        assert ranks == list(range(len(ranks))), f"the replies to {parent_id} have ranks {ranks}, not 0..n-1"


@pytest.fixture
def transition_log():
    log = TransitionLog()
    pre_save.connect(log.pre_save, sender=MessageTree, dispatch_uid="state-machine-transitions")
    yield log
    pre_save.disconnect(sender=MessageTree, dispatch_uid="state-machine-transitions")


@pytest.fixture
def deterministic_lottery(monkeypatch):
    """The lottery after a prompt's acceptance draws with an unseeded rng; seed it so that a failing
    example replays the same way."""
    pick = tree_manager.lottery_pick
    monkeypatch.setattr(tree_manager, "lottery_pick", lambda waiting, rng: pick(waiting, random.Random(len(waiting))))


@pytest.mark.django_db
def test_random_actions_keep_trees_and_tasks_consistent(transition_log, deterministic_lottery):
    users = [UserFactory() for _ in range(USERS)]
    REACHED.clear()
    run_state_machine_as_test(
        lambda: TreeMachine(users, transition_log),
        settings=settings(max_examples=50, stateful_step_count=50, deadline=None, derandomize=True,
                          database=None, suppress_health_check=[HealthCheck.too_slow]),
    )
    for state in (TreeState.GROWING, TreeState.RANKING, TreeState.READY_FOR_EXPORT, TreeState.HALTED_BY_MODERATOR,
                  TreeState.ABORTED_LOW_GRADE):
        assert REACHED[state], f"no example reached {state}: the machine no longer covers it ({dict(REACHED)})"
    assert REACHED["deleted"], "no example soft-deleted a message by red flags"


# --- Bugs the machine found, reduced to their shortest sequence and kept as regression tests ------

GOOD = {"spam": 0}


@pytest.fixture
def act(django_capture_on_commit_callbacks):
    """Call a service as one request would, running its on_commit callbacks (lottery, scoring)."""

    def call(service, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return service(**kwargs)

    return call


def do_task(act, user, task_type, **submission):
    task = act(services.task_request, user=user, task_type=task_type, lang="en", rng=random.Random(0))
    if task_type in TEXT_TASKS:
        return act(services.text_submit, user=user, task_id=task.pk, **submission)
    if task_type in LABEL_TASKS:
        return act(services.labels_submit, user=user, task_id=task.pk, **submission)
    return act(services.ranking_submit, user=user, task_id=task.pk, **submission)


def growing_tree(act, alice, bob):
    prompt = do_task(act, alice, TaskType.INITIAL_PROMPT, text="What is a reward model?")
    do_task(act, bob, TaskType.LABEL_INITIAL_PROMPT, labels=GOOD)
    assert MessageTree.objects.get(pk=prompt.tree_id).state == TreeState.GROWING
    return prompt


def red_flag(act, message, *users):
    for user in users:
        act(services.emoji_set, user=user, message_id=message.pk, emoji=Emoji.RED_FLAG, op="add")
    assert Message.objects.get(pk=message.pk).deleted


@pytest.mark.django_db
def test_deciding_review_of_a_deleted_reply_is_refused_and_keeps_the_counters(tree_settings, act):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1, auto_mod_red_flags=2)
    alice, bob, carol, dave = (UserFactory() for _ in range(4))
    prompt = growing_tree(act, alice, bob)
    reply = do_task(act, bob, TaskType.ASSISTANT_REPLY, text="A model that scores replies.")
    review = act(services.task_request, user=carol, task_type=TaskType.LABEL_ASSISTANT_REPLY, lang="en")
    red_flag(act, reply, alice, dave)
    with contextlib.suppress(ServiceError):
        act(services.labels_submit, user=carol, task_id=review.pk, labels=GOOD)
    tree = MessageTree.objects.get(pk=prompt.tree_id)
    assert (tree.message_count, tree.accepted_count, tree.awaiting_review) == (1, 1, 0), \
        "the counters differ from a recount: only the prompt is live and accepted"


@pytest.mark.django_db
def test_ranking_tree_whose_reply_is_deleted_moves_on(tree_settings, act):
    tree_settings(goal_tree_size=3, num_reviews_initial_prompt=1, num_reviews_reply=1, num_required_rankings=1,
                  auto_mod_red_flags=2)
    alice, bob, carol, dave = (UserFactory() for _ in range(4))
    prompt = growing_tree(act, alice, bob)
    first = do_task(act, bob, TaskType.ASSISTANT_REPLY, text="A model that scores replies.")
    do_task(act, carol, TaskType.ASSISTANT_REPLY, text="It predicts human preference.")
    do_task(act, dave, TaskType.LABEL_ASSISTANT_REPLY, labels=GOOD)
    do_task(act, dave, TaskType.LABEL_ASSISTANT_REPLY, labels=GOOD)
    assert MessageTree.objects.get(pk=prompt.tree_id).state == TreeState.RANKING
    red_flag(act, first, alice, dave)
    tree = MessageTree.objects.get(pk=prompt.tree_id)
    offered = []
    for user in (alice, bob, carol, dave):
        with contextlib.suppress(ServiceError):
            offered.append(act(services.task_request, user=user, task_type=TaskType.RANK_ASSISTANT_REPLIES,
                               lang="en"))
    assert tree.state != TreeState.RANKING or offered, "the tree waits for a ranking that nobody is offered"


@pytest.mark.django_db
def test_review_of_a_halted_prompt_keeps_the_tree_halted(tree_settings, act):
    tree_settings(num_reviews_initial_prompt=1)
    alice, bob = UserFactory(), UserFactory()
    prompt = do_task(act, alice, TaskType.INITIAL_PROMPT, text="What is a reward model?")
    review = act(services.task_request, user=bob, task_type=TaskType.LABEL_INITIAL_PROMPT, lang="en")
    act(services.tree_halt, tree_id=prompt.tree_id)
    with contextlib.suppress(ServiceError):
        act(services.labels_submit, user=bob, task_id=review.pk, labels=GOOD)
    assert MessageTree.objects.get(pk=prompt.tree_id).state == TreeState.HALTED_BY_MODERATOR, \
        "a review moved a halted tree on; only tree_resume may"
