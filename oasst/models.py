"""Users of the platform (contributors, moderators, researchers) and the moderators' audit log."""

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _

from oasst.languages import validate_language, validate_ui_language
from oasst.text import hidden_as_text, validate_name


class User(AbstractUser):
    # AbstractUser's username, which must also be a visible name (it is shown when there is no display name)
    username = models.CharField(
        _("username"), max_length=150, unique=True,
        help_text=_("Required. 150 characters or fewer. Letters, digits and @/./+/-/_ only."),
        validators=[AbstractUser.username_validator, validate_name],
        error_messages={"unique": _("A user with that username already exists.")},
    )
    display_name = models.CharField(
        verbose_name=_("display name"), max_length=64, blank=True, validators=[validate_name],
    )
    preferred_language = models.CharField(
        verbose_name=_("preferred language"), max_length=16, default="en", validators=[validate_language],
    )
    ui_language = models.CharField(
        verbose_name=_("interface language"), max_length=8, blank=True, validators=[validate_ui_language],
        help_text=_("The interface language; blank follows the task language (preferred_language)."),
    )
    tos_accepted_at = models.DateTimeField(verbose_name=_("tos accepted at"), null=True, blank=True)
    show_on_leaderboard = models.BooleanField(verbose_name=_("show on leaderboard"), default=True)
    is_banned = models.BooleanField(verbose_name=_("is banned"), default=False)
    ban_reason = models.TextField(verbose_name=_("ban reason"), blank=True)
    last_activity_at = models.DateTimeField(verbose_name=_("last activity at"), null=True, blank=True)
    streak_days = models.PositiveIntegerField(verbose_name=_("streak days"), default=0)
    streak_last_day_at = models.DateTimeField(
        verbose_name=_("streak last day at"), null=True, blank=True,
        help_text=_("When the current streak last gained a day."),
    )
    moderator_notes = models.TextField(
        verbose_name=_("moderator notes"), blank=True, help_text=_("Seen by moderators only."),
    )

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        indexes = [models.Index(fields=["last_activity_at"], name="user_last_activity_idx")]
        permissions = [("moderate_user", "Can ban, unban and purge users")]

    def __str__(self) -> str:
        return hidden_as_text(self.public_name)

    @property
    def public_name(self) -> str:
        return self.display_name or self.username

    @property
    def has_accepted_tos(self) -> bool:
        return self.tos_accepted_at is not None


class ModerationEvent(models.Model):
    """The moderators' audit log: append-only, written by the moderation services alone."""

    actor = models.ForeignKey(
        User, verbose_name=_("actor"), null=True, on_delete=models.SET_NULL, related_name="moderation_events",
    )
    action = models.CharField(verbose_name=_("action"), max_length=48, db_index=True)
    target_type = models.CharField(verbose_name=_("target type"), max_length=16)
    target_id = models.CharField(verbose_name=_("target id"), max_length=64, db_index=True)
    reason = models.TextField(verbose_name=_("reason"), blank=True)
    before = models.JSONField(verbose_name=_("before"), default=dict, blank=True)
    after = models.JSONField(verbose_name=_("after"), default=dict, blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("moderation event")
        verbose_name_plural = _("moderation events")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type} {self.target_id}"
