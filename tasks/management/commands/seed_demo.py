"""Demo data for a local site: an admin account (admin / admin), a moderator account (moderator / moderator,
staff in the moderators group) and a demo community of twelve contributors (password demo) whose
conversation trees stand in every state a tree reaches.

The community is built through the task services, the way contributors build one (tasks requested,
texts written, reviews, rankings, reactions, reports, skipped tasks), so every counter and state is
one that real use produces. The texts come from tasks/fixtures/demo_conversations.json. The build is
deterministic (a seeded random.Random) and idempotent: when the demo users exist, nothing is added.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from allauth.account.models import EmailAddress
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from oasst.errors import NotFound
from ranking.models import Frame, Ranking
from ranking.services import leaderboard_rebuild
from tasks import services
from tasks.models import (
    EmojiReaction,
    FlaggedMessage,
    Message,
    MessageTree,
    Review,
    Role,
    Task,
    TaskType,
    TreeState,
)
from tasks.scoring import tree_score_or_fail
from tasks.tree_manager import tree_config

DEMO_ADMIN = ("admin", "admin@example.org", "admin")
DEMO_MODERATOR = ("moderator", "moderator@example.org", "moderator")
DEMO_PASSWORD = "demo"  # noqa: S105 - the documented password of every demo contributor
# username, display name, languages (the first is the preferred one), activity (a weight: how much
# of the work the user picks up)
DEMO_USERS = (
    ("amelia", "Amelia Hart", ("en",), 5),
    ("ben", "Ben Okafor", ("en",), 4),
    ("priya", "Priya Nair", ("en",), 4),
    ("daniel", "Daniel Kim", ("en", "de"), 3),
    ("emma", "Emma Lindqvist", ("en", "de"), 3),
    ("chloe", "Chloe Martin", ("en",), 2),
    ("grace", "Grace Mensah", ("en",), 2),
    ("isabel", "Isabel Rossi", ("en", "de"), 2),
    ("hiro", "Hiro Tanaka", ("en",), 1),
    ("marcus", "Marcus Reid", ("en", "de"), 1),
    ("jonas", "Jonas Becker", ("de", "en"), 3),
    ("lena", "Lena Vogel", ("de", "en"), 2),
)
SEED = 2023
RANKER_DISAGREEMENT = 0.3  # how often a ranker swaps two neighbours of the intended order

# Trees are built one phase after another, each tree to its final state before the next starts, so
# that a request for a task type finds only the tree being built: finished trees first, then those
# left part-way, and last the prompts that no later request may touch.
BUILD_ORDER = (
    TreeState.READY_FOR_EXPORT, TreeState.RANKING, TreeState.HALTED_BY_MODERATOR, TreeState.ABORTED_LOW_GRADE,
    TreeState.GROWING, TreeState.PROMPT_LOTTERY_WAITING, TreeState.INITIAL_PROMPT_REVIEW,
)
GROWN = (TreeState.READY_FOR_EXPORT, TreeState.RANKING, TreeState.HALTED_BY_MODERATOR, TreeState.GROWING)


def conversations_path() -> Path:
    return Path(apps.get_app_config("tasks").path) / "fixtures" / "demo_conversations.json"


@dataclass(eq=False)
class Node:
    """One scripted message and, once built, the message written for it."""

    text: str
    role: str
    position: int  # among its siblings in the file, best first
    replies: list[Node] = field(default_factory=list)
    verdict: str = ""
    reviews: int | None = None
    reactions: dict[str, int] = field(default_factory=dict)
    report: str = ""
    review_report: str = ""
    message: Message | None = None

    def walk(self):
        yield self
        for reply in self.replies:
            yield from reply.walk()


@dataclass(eq=False)
class Conversation:
    state: str
    lang: str
    prompt: Node
    rankings: int = 0
    skips: list[dict] = field(default_factory=list)
    tree_id: object = None

    @property
    def title(self) -> str:
        return self.prompt.text[:50]


def _node(data: dict, role: str, position: int) -> Node:
    reply_role = Role.ASSISTANT if role == Role.PROMPTER else Role.PROMPTER
    return Node(text=data["text"], role=role, position=position,
                replies=[_node(reply, reply_role, i) for i, reply in enumerate(data.get("replies", []))],
                verdict=data.get("verdict", ""), reviews=data.get("reviews"), reactions=data.get("reactions", {}),
                report=data.get("report", ""), review_report=data.get("review_report", ""))


def load_conversations(path: Path) -> list[Conversation]:
    conversations = []
    for data in json.loads(path.read_text(encoding="utf-8"))["conversations"]:
        conversation = Conversation(state=data["state"], lang=data["lang"],
                                    prompt=_node(data["prompt"], Role.PROMPTER, 0),
                                    rankings=data.get("rankings", 0), skips=data.get("skips", []))
        followed = [reply for reply in conversation.prompt.replies if reply.replies]
        if conversation.state not in BUILD_ORDER or len(followed) > 1 or any(
                len(reply.replies) > 1 or any(answer.replies for answer in reply.replies[0].replies)
                for reply in followed):
            raise CommandError(f"{path.name}: {conversation.title!r} has a state or shape seed_demo cannot build.")
        conversations.append(conversation)
    return conversations


class CommunityBuilder:
    """Plays the demo users through the services until each conversation's tree is in its state."""

    def __init__(self, users: list, rng: random.Random):
        self.users = users
        self.rng = rng
        profiles = {username: (languages, activity) for username, _, languages, activity in DEMO_USERS}
        self.languages = {user.pk: profiles[user.username][0] for user in users}
        self.activity = {user.pk: profiles[user.username][1] for user in users}
        self.config = tree_config()
        self.nodes: dict[str, Node] = {}

    def build(self, conversations: list[Conversation]) -> None:
        config = self.config
        with self.limits(max_tree_depth=max(config.max_tree_depth, 3),
                         max_initial_prompt_review=max(config.max_initial_prompt_review, len(conversations))):
            for state in BUILD_ORDER[:-2]:
                for conversation in conversations:
                    if conversation.state == state:
                        self.build_tree(conversation)
            # Accepted prompts wait in the lottery only while their language has no room to grow: hold
            # the limit at what grows now (the site's first task request then activates them).
            waiting_langs = {c.lang for c in conversations if c.state == TreeState.PROMPT_LOTTERY_WAITING}
            growing = Counter(MessageTree.objects.filter(state=TreeState.GROWING).values_list("lang", flat=True))
            with self.limits(max_active_trees=max(1, min((growing[lang] for lang in waiting_langs), default=1))):
                for state in BUILD_ORDER[-2:]:
                    for conversation in conversations:
                        if conversation.state == state:
                            self.build_tree(conversation)
        for conversation in conversations:
            state = self.state(conversation)
            if state != conversation.state:
                raise CommandError(f"Demo tree {conversation.title!r} ended in {state}, not {conversation.state}.")

    @staticmethod
    def limits(**overrides):
        return override_settings(OASST={**settings.OASST, **overrides})

    def tree_limits(self, conversation: Conversation) -> dict:
        """A tree built to be ranked grows exactly its scripted messages, and its prompt takes no
        more replies than it has, so that the follow-up's answers can only go to the follow-up.
        A tree left growing keeps room to grow."""
        kept = sum(1 for node in conversation.prompt.walk() if node.verdict != "spam")
        replies = sum(1 for reply in conversation.prompt.replies if reply.verdict != "spam")
        if conversation.state in (TreeState.READY_FOR_EXPORT, TreeState.RANKING):
            return {"goal_tree_size": kept, "max_children_count": max(replies, 1)}
        return {"goal_tree_size": max(self.config.goal_tree_size, kept + 2),
                "max_children_count": max(self.config.max_children_count, replies)}

    def build_tree(self, conversation: Conversation) -> None:
        # The whole build runs under the tree's limits: the tree copies them when its prompt is
        # written, and reserving a reply slot reads max_children_count from the settings.
        with self.limits(**self.tree_limits(conversation)):
            self.build_tree_in_limits(conversation)

    def build_tree_in_limits(self, conversation: Conversation) -> None:
        prompt = conversation.prompt
        self.write(conversation, prompt, parent=None)
        conversation.tree_id = prompt.message.tree_id
        self.review(conversation, prompt)
        if conversation.state in GROWN:
            self.grow(conversation)
        if conversation.state in (TreeState.READY_FOR_EXPORT, TreeState.RANKING):
            self.rank(conversation)
        self.react(conversation)
        for skip in conversation.skips:
            task = self.take(conversation, skip["task"])
            if task is not None:  # settings other than the defaults may leave no such task
                services.task_nack(user=task.user, task_id=task.pk, reason=skip["reason"])
        # Auto-moderation halts a tree after enough skipped replies; otherwise a moderator does.
        if conversation.state == TreeState.HALTED_BY_MODERATOR and conversation.state != self.state(conversation):
            services.tree_halt(tree_id=conversation.tree_id)

    def grow(self, conversation: Conversation) -> None:
        """Replies in an order where every reply task can go to one parent only: the reply with the
        follow-up comes first and gets it while no other reply is accepted; the follow-up is reviewed
        after the prompt's replies and answered once the prompt takes no more replies."""
        prompt = conversation.prompt
        followed = next((reply for reply in prompt.replies if reply.replies), None)
        for reply in sorted(prompt.replies, key=lambda r: (r is not followed, r.verdict != "spam")):
            self.write(conversation, reply, parent=prompt)
            self.review(conversation, reply)
            if reply is followed and self.accepted(reply):
                self.write(conversation, reply.replies[0], parent=reply)
        followup = followed.replies[0] if followed else None
        if followup is None or followup.message is None:
            return
        self.review(conversation, followup)
        if self.accepted(followup):
            for answer in followup.replies:
                self.write(conversation, answer, parent=followup)
                self.review(conversation, answer)

    def workers(self, lang: str, exclude=()) -> list:
        """The users who work in this language, in a random order weighted by their activity."""
        pool = [user for user in self.users if lang in self.languages[user.pk] and user.pk not in exclude]
        return sorted(pool, key=lambda user: self.rng.random() ** (1 / self.activity[user.pk]), reverse=True)

    def take(self, conversation: Conversation, task_type: str, *, item: Message | None = None,
             exclude=()) -> Task | None:
        """The first task of this type that a worker is handed, which must be on the tree being built."""
        for user in self.workers(conversation.lang, exclude):
            try:
                task = services.task_request(user=user, task_type=task_type, lang=conversation.lang, rng=self.rng)
            except NotFound:
                continue
            if (conversation.tree_id and task.tree_id != conversation.tree_id) or (item and task.item_id != item.pk):
                raise CommandError(f"seed_demo is out of step: a {task_type} task went elsewhere than to "
                                   f"{conversation.title!r}.")
            return task
        return None

    def write(self, conversation: Conversation, node: Node, *, parent: Node | None) -> None:
        if parent is None:
            task_type, busy = TaskType.INITIAL_PROMPT, set()
        else:
            task_type = TaskType.ASSISTANT_REPLY if parent.role == Role.PROMPTER else TaskType.PROMPTER_REPLY
            busy = {parent.message.author_id} | {r.message.author_id for r in parent.replies if r.message}
        task = self.take(conversation, task_type, item=parent.message if parent else None, exclude=busy)
        if task is None:
            raise CommandError(f"No demo user could take a {task_type} task on {conversation.title!r}.")
        node.message = services.text_submit(user=task.user, task_id=task.pk, text=node.text)
        self.nodes[str(node.message.pk)] = node

    def review(self, conversation: Conversation, node: Node) -> None:
        """The required reviews, or the fewer that the node asks for (it then stays undecided)."""
        is_root = node.message.parent_id is None
        required = self.config.reviews_required(is_root=is_root)
        planned = required if node.reviews is None else min(node.reviews, required - 1)
        if is_root:
            task_type = TaskType.LABEL_INITIAL_PROMPT
        else:
            task_type = TaskType.LABEL_ASSISTANT_REPLY if node.role == Role.ASSISTANT else TaskType.LABEL_PROMPTER_REPLY
        reviewers = {node.message.author_id}
        for done in range(planned):
            task = self.take(conversation, task_type, item=node.message, exclude=reviewers)
            if task is None:
                raise CommandError(f"No demo user could review {node.text[:50]!r}.")
            report = bool(node.review_report) and done == 0
            services.labels_submit(user=task.user, task_id=task.pk, labels=self.labels(node, task.payload),
                                   text=node.review_report if report else "", report=report)
            reviewers.add(task.user.pk)

    def labels(self, node: Node, payload: dict) -> dict:
        choice = self.rng.choice
        if node.verdict == "spam":
            values = {"spam": 1, "lang_mismatch": 0, "not_appropriate": 1, "quality": 0, "toxicity": 0.5,
                      "helpfulness": 0}
        else:
            values = {"spam": 0, "lang_mismatch": 0, "fails_task": 0, "pii": 0, "not_appropriate": 0,
                      "hate_speech": 0, "sexual_content": 0, "quality": choice((0.5, 0.75, 0.75, 1)),
                      "helpfulness": choice((0.5, 0.75, 1)), "creativity": choice((0.25, 0.5, 0.75)),
                      "humor": choice((0, 0, 0.25)), "toxicity": 0, "violence": 0}
        return {name: value for name, value in values.items() if name in payload["valid_labels"]}

    @staticmethod
    def accepted(node: Node) -> bool:
        return Message.objects.filter(pk=node.message.pk, review_result=True).exists()

    def rank(self, conversation: Conversation) -> None:
        """A finished tree gets every ranking it needs and is scored; a tree left in the ranking
        state gets the few its conversation asks for."""
        if conversation.state == TreeState.READY_FOR_EXPORT:
            while self.state(conversation) == TreeState.RANKING:
                self.rank_once(conversation)
            if self.state(conversation) == TreeState.READY_FOR_SCORING:
                # Scoring is a job started on commit; score here where it did not run (or waits for a worker).
                tree_score_or_fail(tree_id=conversation.tree_id)
        else:
            for _ in range(min(conversation.rankings, self.config.num_required_rankings - 1)):
                self.rank_once(conversation)

    def rank_once(self, conversation: Conversation) -> None:
        task = self.take(conversation, TaskType.RANK_ASSISTANT_REPLIES)
        if task is None:
            raise CommandError(f"No demo user could rank the replies in {conversation.title!r}.")
        services.ranking_submit(user=task.user, task_id=task.pk, ranking=self.ranking_order(task))

    @staticmethod
    def state(conversation: Conversation) -> str:
        return MessageTree.objects.filter(pk=conversation.tree_id).values_list("state", flat=True).get()

    def ranking_order(self, task: Task) -> list[str]:
        order = sorted((reply["id"] for reply in task.payload["reply_messages"]), key=lambda i: self.nodes[i].position)
        if len(order) > 1 and self.rng.random() < RANKER_DISAGREEMENT:
            i = self.rng.randrange(len(order) - 1)
            order[i], order[i + 1] = order[i + 1], order[i]
        return order

    def react(self, conversation: Conversation) -> None:
        for node in conversation.prompt.walk():
            if node.message is None:
                continue
            voted: set = set()  # +1 and -1 exclude each other
            for emoji, count in node.reactions.items():
                users = [user for user in self.workers(conversation.lang, exclude={node.message.author_id})
                         if emoji not in ("+1", "-1") or user.pk not in voted]
                for user in users[:count]:
                    try:
                        services.emoji_set(user=user, message_id=node.message.pk, emoji=emoji, op="add")
                    except NotFound:  # auto-moderation deleted the message after its red flags
                        break
                    if emoji in ("+1", "-1"):
                        voted.add(user.pk)
            if node.report:
                reporter = self.workers(conversation.lang, exclude={node.message.author_id})[0]
                services.message_report(user=reporter, message_id=node.message.pk, reason=node.report)


class Command(BaseCommand):
    help = "Create the demo admin account and a demo community (development only)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    def handle(self, *args, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo creates well-known passwords: it runs only with DEBUG on (or --force).")
        self.create_staff_account(DEMO_ADMIN, title="admin", is_superuser=True)
        moderator = self.create_staff_account(DEMO_MODERATOR, title="moderator", is_superuser=False)
        moderators = Group.objects.filter(name="moderators").first()  # made by a migration, with its rights
        if moderators is None:
            self.stderr.write("No moderators group (run migrate): the demo moderator has no moderation rights.")
        else:
            moderator.groups.add(moderators)
        self.create_community()

    @transaction.atomic
    def create_staff_account(self, account: tuple[str, str, str], *, title: str, is_superuser: bool):
        username, email, password = account
        user, created = get_user_model().objects.get_or_create(
            username=username,
            defaults={"email": email, "is_staff": True, "is_superuser": is_superuser,
                      "display_name": f"Demo {title}", "tos_accepted_at": timezone.now()},
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
            EmailAddress.objects.get_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
            self.stdout.write(f"Demo {title} created: {username} / {password}")
        else:
            self.stdout.write(f"Demo {title} exists: {username}")
        return user

    def create_community(self) -> None:
        usernames = [username for username, *_ in DEMO_USERS]
        existing = get_user_model().objects.filter(username__in=usernames).count()
        if existing:
            self.stdout.write(f"Demo community exists ({existing} demo users): nothing added.")
            return
        started = time.monotonic()
        conversations = load_conversations(conversations_path())
        # Not one transaction: scoring and the prompt lottery run when each service call commits.
        CommunityBuilder(self.create_users(), random.Random(SEED)).build(conversations)
        for frame in Frame.values:  # the leaderboard shows the community at once, not after the first job
            leaderboard_rebuild(frame=frame)
        self.report(conversations, seconds=time.monotonic() - started)

    @transaction.atomic
    def create_users(self) -> list:
        User = get_user_model()
        password = make_password(DEMO_PASSWORD)  # hashed once: the password is public anyway
        now = timezone.now()
        users = User.objects.bulk_create([
            User(username=username, email=f"{username}@example.org", display_name=display_name,
                 preferred_language=languages[0], tos_accepted_at=now, password=password)
            for username, display_name, languages, _ in DEMO_USERS
        ])
        EmailAddress.objects.bulk_create([EmailAddress(user=user, email=user.email, verified=True, primary=True)
                                          for user in users])
        return users

    def report(self, conversations: list[Conversation], *, seconds: float) -> None:
        trees = [conversation.tree_id for conversation in conversations]
        states = Counter(MessageTree.objects.filter(pk__in=trees).values_list("state", flat=True))
        self.stdout.write(f"Demo community created in {seconds:.1f} s: {len(DEMO_USERS)} contributors, "
                          f"password {DEMO_PASSWORD!r} for all:")
        self.stdout.write("  " + ", ".join(f"{username} ({languages[0]})" for username, _, languages, _ in DEMO_USERS))
        self.stdout.write("Trees: " + ", ".join(f"{states[state]} {state}" for state in BUILD_ORDER))
        self.stdout.write(
            f"  {Message.objects.filter(tree__in=trees).count()} messages, "
            f"{Review.objects.filter(message__tree__in=trees).count()} reviews, "
            f"{Ranking.objects.filter(parent__tree__in=trees).count()} rankings, "
            f"{EmojiReaction.objects.filter(message__tree__in=trees).count()} reactions, "
            f"{FlaggedMessage.objects.filter(message__tree__in=trees).count()} flagged messages, "
            f"{Task.objects.filter(tree__in=trees, skipped=True).count()} skipped tasks")
        self.stdout.write("  Waiting prompts start to grow at the first task request in their language.")
