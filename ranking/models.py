"""Rankings and what comes of them: consensus, contribution events, scores and the leaderboard."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from ranking import scoring


class Ranking(models.Model):
    parent = models.ForeignKey("tasks.Message", on_delete=models.CASCADE, related_name="rankings")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="rankings")
    task = models.OneToOneField("tasks.Task", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="ranking")
    ranking = models.JSONField(default=list, help_text="Reply ids, best first; empty when not rankable.")
    not_rankable = models.BooleanField(default=False)
    agreement = models.FloatField(null=True, blank=True, help_text="Kendall's tau with the consensus.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("ranking")
        verbose_name_plural = _("rankings")
        constraints = [models.UniqueConstraint(fields=["parent", "user"], name="ranking_once_per_user")]

    def __str__(self) -> str:
        return f"ranking of {self.parent_id} by {self.user_id}"


class RankingResult(models.Model):
    """The consensus of one parent's rankings, and how far the rankers agreed."""

    parent = models.OneToOneField(
        "tasks.Message", verbose_name=_("parent"), on_delete=models.CASCADE, related_name="ranking_result",
    )
    consensus = models.JSONField(verbose_name=_("consensus"), default=list, help_text=_("Reply ids, best first."))
    rankings = models.PositiveIntegerField(
        verbose_name=_("rankings"), default=0, help_text=_("Complete rankings the consensus used."),
    )
    not_rankable = models.PositiveIntegerField(
        verbose_name=_("not rankable"), default=0, help_text=_('"Not rankable" submissions.'),
    )
    agreement = models.FloatField(
        verbose_name=_("agreement"), null=True, blank=True, help_text=_("Kendall's W of the rankings (1 = unanimous)."),
    )
    computed_at = models.DateTimeField(verbose_name=_("computed at"), auto_now=True)

    class Meta:
        verbose_name = _("ranking result")
        verbose_name_plural = _("ranking results")

    def __str__(self) -> str:
        return f"consensus of {self.parent_id}"


# The kinds of contribution that earn points: defined once, with their weights, in ranking.scoring.
EventKind = models.TextChoices("EventKind", [(kind.upper(), kind) for kind in scoring.KINDS])


class ContributionEvent(models.Model):
    """One thing a user did or earned; points per time frame are counted from these."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    message = models.ForeignKey("tasks.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("contribution event")
        verbose_name_plural = _("contribution events")
        indexes = [models.Index(fields=["user", "created_at"], name="event_user_created_idx")]

    def __str__(self) -> str:
        return f"{self.kind} by {self.user_id}"


class Frame(models.TextChoices):
    DAY = "day", _("Day")
    WEEK = "week", _("Week")
    MONTH = "month", _("Month")
    TOTAL = "total", _("Total")


class UserScore(models.Model):
    """A user's points in one time frame with the breakdown, refreshed after each contribution."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scores")
    frame = models.CharField(max_length=8, choices=Frame.choices)
    score = models.IntegerField(default=0)
    counts = models.JSONField(default=dict, help_text="kind -> number of contributions")
    breakdown = models.JSONField(default=dict, help_text="kind -> points")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("user score")
        verbose_name_plural = _("user scores")
        constraints = [models.UniqueConstraint(fields=["user", "frame"], name="score_once_per_frame")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.frame}: {self.score}"


class LeaderboardEntry(models.Model):
    """The materialised leaderboard of one time frame, rebuilt whole by a periodic job."""

    frame = models.CharField(max_length=8, choices=Frame.choices)
    rank = models.PositiveIntegerField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    score = models.IntegerField()
    level = models.PositiveSmallIntegerField()
    built_at = models.DateTimeField()

    class Meta:
        verbose_name = _("leaderboard entry")
        verbose_name_plural = _("leaderboard entries")
        constraints = [
            models.UniqueConstraint(fields=["frame", "rank"], name="leaderboard_rank_unique"),
            models.UniqueConstraint(fields=["frame", "user"], name="leaderboard_user_unique"),
        ]
        permissions = [("view_trollboard", "Can view the trollboard")]

    def __str__(self) -> str:
        return f"{self.frame} #{self.rank}: {self.user_id}"
