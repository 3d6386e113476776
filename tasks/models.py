"""Conversation trees, messages, tasks, reviews, reactions and the flagged queue.

Counters on trees and messages (`*_pending`, `children_count`, ...) let a task be claimed with
one conditional UPDATE; `tasks.services` is their only writer and can recompute them.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from oasst.text import hidden_as_text


class TreeState(models.TextChoices):
    INITIAL_PROMPT_REVIEW = "initial_prompt_review", _("Initial Prompt Review")
    PROMPT_LOTTERY_WAITING = "prompt_lottery_waiting", _("Prompt Lottery Waiting")
    GROWING = "growing", _("Growing")
    RANKING = "ranking", _("Ranking")
    READY_FOR_SCORING = "ready_for_scoring", _("Ready For Scoring")
    READY_FOR_EXPORT = "ready_for_export", _("Ready For Export")
    SCORING_FAILED = "scoring_failed", _("Scoring Failed")
    ABORTED_LOW_GRADE = "aborted_low_grade", _("Aborted Low Grade")
    HALTED_BY_MODERATOR = "halted_by_moderator", _("Halted By Moderator")
    BACKLOG_RANKING = "backlog_ranking", _("Backlog Ranking")


class Role(models.TextChoices):
    PROMPTER = "prompter", _("Prompter")
    ASSISTANT = "assistant", _("Assistant")


class TaskType(models.TextChoices):
    INITIAL_PROMPT = "initial_prompt", _("Initial Prompt")
    PROMPTER_REPLY = "prompter_reply", _("Prompter Reply")
    ASSISTANT_REPLY = "assistant_reply", _("Assistant Reply")
    RANK_INITIAL_PROMPTS = "rank_initial_prompts", _("Rank Initial Prompts")
    RANK_PROMPTER_REPLIES = "rank_prompter_replies", _("Rank Prompter Replies")
    RANK_ASSISTANT_REPLIES = "rank_assistant_replies", _("Rank Assistant Replies")
    LABEL_INITIAL_PROMPT = "label_initial_prompt", _("Label Initial Prompt")
    LABEL_PROMPTER_REPLY = "label_prompter_reply", _("Label Prompter Reply")
    LABEL_ASSISTANT_REPLY = "label_assistant_reply", _("Label Assistant Reply")


class MessageTree(models.Model):
    id = models.UUIDField(verbose_name=_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    state = models.CharField(
        verbose_name=_("state"), max_length=32, choices=TreeState.choices, default=TreeState.INITIAL_PROMPT_REVIEW,
    )
    halted_from_state = models.CharField(
        verbose_name=_("halted from state"), max_length=32, choices=TreeState.choices, blank=True,
    )
    lang = models.CharField(verbose_name=_("language"), max_length=16)
    origin = models.CharField(
        verbose_name=_("origin"), max_length=32, default="platform", help_text=_("platform, import, ..."),
    )
    # Limits copied from the settings when the tree is created, so changing them affects new trees only.
    goal_tree_size = models.PositiveSmallIntegerField(verbose_name=_("goal tree size"))
    max_depth = models.PositiveSmallIntegerField(verbose_name=_("max depth"))
    max_children_count = models.PositiveSmallIntegerField(verbose_name=_("max children count"))
    # Messages that count toward the tree: not deleted, not rejected (accepted or awaiting review).
    message_count = models.PositiveIntegerField(verbose_name=_("message count"), default=0)
    accepted_count = models.PositiveIntegerField(verbose_name=_("accepted count"), default=0)
    awaiting_review = models.PositiveIntegerField(verbose_name=_("awaiting review"), default=0)
    replies_pending = models.PositiveIntegerField(verbose_name=_("replies pending"), default=0)
    reply_skip_count = models.PositiveIntegerField(verbose_name=_("reply skip count"), default=0)
    activated_at = models.DateTimeField(verbose_name=_("activated at"), null=True, blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("message tree")
        verbose_name_plural = _("message trees")
        permissions = [("moderate_tree", "Can halt, resume and move trees"),
                       ("export_trees", "Can download exports of the trees")]
        indexes = [
            models.Index(fields=["state", "lang"], name="tree_state_lang_idx"),
            models.Index(fields=["state", "updated_at"], name="tree_state_updated_idx"),
        ]

    def __str__(self) -> str:
        return f"tree {self.pk} ({self.state})"


class Message(models.Model):
    id = models.UUIDField(verbose_name=_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on tree and author: message_tree_depth_idx and message_author_created_idx lead with
    # them, and each index more is one more random page written per message insert in a large table (issue 19).
    tree = models.ForeignKey(
        MessageTree, verbose_name=_("tree"), on_delete=models.CASCADE, related_name="messages", db_index=False,
    )
    parent = models.ForeignKey(
        "self", verbose_name=_("parent"), null=True, blank=True, on_delete=models.CASCADE, related_name="children",
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("author"), null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="messages", db_index=False)
    task = models.OneToOneField("Task", verbose_name=_("task"), null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="result_message")
    client_id = models.CharField(verbose_name=_("client id"), max_length=64, blank=True)
    role = models.CharField(verbose_name=_("role"), max_length=16, choices=Role.choices)
    text = models.TextField(verbose_name=_("text"))
    lang = models.CharField(verbose_name=_("language"), max_length=16)
    depth = models.PositiveSmallIntegerField(verbose_name=_("depth"), default=0)
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    review_count = models.PositiveIntegerField(verbose_name=_("review count"), default=0)
    review_result = models.BooleanField(
        verbose_name=_("review result"), null=True, help_text=_("True accepted, False rejected, empty undecided."),
    )
    reviews_pending = models.PositiveIntegerField(verbose_name=_("reviews pending"), default=0)
    children_count = models.PositiveIntegerField(
        verbose_name=_("children count"), default=0, help_text=_("Replies that are not deleted or rejected."),
    )
    replies_pending = models.PositiveIntegerField(verbose_name=_("replies pending"), default=0)
    ranking_count = models.PositiveIntegerField(verbose_name=_("ranking count"), default=0)
    rankings_pending = models.PositiveIntegerField(verbose_name=_("rankings pending"), default=0)
    rank = models.PositiveSmallIntegerField(verbose_name=_("rank"), null=True, blank=True)
    deleted = models.BooleanField(verbose_name=_("deleted"), default=False)
    synthetic = models.BooleanField(verbose_name=_("synthetic"), default=False)
    model_name = models.CharField(verbose_name=_("model name"), max_length=256, blank=True)
    emojis = models.JSONField(verbose_name=_("emojis"), default=dict, blank=True)
    labels = models.JSONField(
        verbose_name=_("labels"), default=dict, blank=True,
        help_text=_("name -> {value, count}, averaged over reviews."),
    )
    red_flags = models.PositiveIntegerField(verbose_name=_("red flags"), default=0)
    edited = models.BooleanField(verbose_name=_("edited"), default=False)
    reward_score = models.FloatField(
        verbose_name=_("reward score"), null=True, blank=True, help_text=_("Reward model score; low is a signal."),
    )
    reward_run_id = models.PositiveIntegerField(
        verbose_name=_("reward run id"), null=True, blank=True, db_index=True,
        help_text=_("The training run whose reward model gave reward_score (a plain id: training is above tasks)."),
    )

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        permissions = [("moderate_message", "Can delete, undelete, edit and flag messages")]
        indexes = [
            models.Index(fields=["tree", "depth"], name="message_tree_depth_idx"),
            models.Index(fields=["author", "created_at"], name="message_author_created_idx"),
            models.Index(fields=["-created_at"], name="message_created_idx"),
            models.Index(fields=["tree"], condition=Q(review_result__isnull=True, deleted=False),
                         name="message_undecided_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["author", "client_id"], condition=~Q(client_id=""),
                                    name="message_unique_client_id"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="message_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {hidden_as_text(self.text[:60])}"

    @property
    def review_state(self) -> str:
        return {True: "accepted", False: "rejected", None: "undecided"}[self.review_result]


class MessageRevision(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="revisions")
    text = models.TextField(help_text="The text before this edit.")
    editor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("message revision")
        verbose_name_plural = _("message revisions")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"revision of {self.message_id} at {self.created_at:%Y-%m-%d %H:%M}"


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=32, choices=TaskType.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    lang = models.CharField(max_length=16)
    # The item the task works on: the parent to reply to or rank under, or the message to label.
    item = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks")
    tree = models.ForeignKey(MessageTree, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks")
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    acked_at = models.DateTimeField(null=True, blank=True)
    skipped = models.BooleanField(default=False)
    skip_reason = models.CharField(max_length=512, blank=True)
    done = models.BooleanField(default=False)
    done_at = models.DateTimeField(null=True, blank=True)
    expired = models.BooleanField(default=False, help_text="Released by the expiry job before it was done.")

    class Meta:
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        indexes = [
            models.Index(fields=["user", "item"], name="task_user_item_idx"),
            models.Index(fields=["user", "created_at"], condition=Q(done=False, skipped=False, expired=False),
                         name="task_user_open_idx"),
            models.Index(fields=["expires_at"], condition=Q(done=False, skipped=False, expired=False),
                         name="task_open_expiry_idx"),
        ]
        constraints = [
            # Never one item twice to one user, also when their requests race (tasks.services' claim lock).
            models.UniqueConstraint(fields=["user", "item"],
                                    condition=Q(done=False, skipped=False, expired=False, item__isnull=False),
                                    name="task_open_once_per_user_item"),
        ]

    def __str__(self) -> str:
        return f"{self.type} task {self.pk}"

    @property
    def is_open(self) -> bool:
        return not (self.done or self.skipped or self.expired)


class Review(models.Model):
    class Mode(models.TextChoices):
        SIMPLE = "simple", _("Simple")
        FULL = "full", _("Full")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reviews")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="reviews")
    task = models.OneToOneField(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="review")
    mode = models.CharField(max_length=8, choices=Mode.choices)
    labels = models.JSONField(help_text="label name -> value in [0, 1]")
    text = models.TextField(blank=True)
    report = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("review")
        verbose_name_plural = _("reviews")
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="review_once_per_user")]

    def __str__(self) -> str:
        return f"{self.mode} review of {self.message_id}"


class Emoji(models.TextChoices):
    PLUS_ONE = "+1", _("Plus One")
    MINUS_ONE = "-1", _("Minus One")
    RED_FLAG = "red_flag", _("Red Flag")
    HUNDRED = "100", _("Hundred")
    ROFL = "rofl", _("Rofl")
    CLAP = "clap", _("Clap")
    DIAMOND = "diamond", _("Diamond")
    HEART_EYES = "heart_eyes", _("Heart Eyes")
    DISAPPOINTED = "disappointed", _("Disappointed")
    POOP = "poop", _("Poop")
    SKULL = "skull", _("Skull")


class EmojiReaction(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions")
    emoji = models.CharField(max_length=16, choices=Emoji.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("emoji reaction")
        verbose_name_plural = _("emoji reactions")
        constraints = [models.UniqueConstraint(fields=["message", "user", "emoji"], name="emoji_once_per_user")]

    def __str__(self) -> str:
        return f"{self.emoji} on {self.message_id}"


class MessageReport(models.Model):
    """Who reported a message, once per user: the queue counts reporters, not clicks."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="user_reports")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="message_reports")
    reason = models.CharField(max_length=512, blank=True, help_text="Empty for a red flag or a review's tick.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("message report")
        verbose_name_plural = _("message reports")
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="report_once_per_user")]

    def __str__(self) -> str:
        return f"report on {self.message_id} by {self.user_id}"


class FlaggedMessage(models.Model):
    """The moderators' queue: one entry per reported message, however often it was reported."""

    message = models.OneToOneField(Message, verbose_name=_("message"), on_delete=models.CASCADE, related_name="flag")
    reports = models.PositiveIntegerField(verbose_name=_("reports"), default=0)
    reasons = models.JSONField(verbose_name=_("reasons"), default=list, blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)
    processed = models.BooleanField(verbose_name=_("processed"), default=False)

    class Meta:
        verbose_name = _("flagged message")
        verbose_name_plural = _("flagged messages")
        indexes = [models.Index(fields=["processed", "updated_at"], name="flag_queue_idx")]

    def __str__(self) -> str:
        return f"flag on {self.message_id} ({self.reports} reports)"


class ServingScorer(models.Model):
    """The training run whose reward model is in service, as tasks knows it: one row (pk SINGLETON), set by
    training.serving through tasks.services.serving_scorer_set. The ranking queue weighs only scores that run
    wrote (Message.reward_run_id); none in service, no score counts."""

    SINGLETON = 1
    run_id = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no reward model in service.")
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("serving scorer")
        verbose_name_plural = _("serving scorers")

    def __str__(self) -> str:
        return f"reward model in service: run {self.run_id}" if self.run_id else "no reward model in service"
