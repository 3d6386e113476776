"""Users of the platform (contributors, moderators, researchers) and the moderators' audit log."""

from django.contrib.auth.models import AbstractUser
from django.db import models

from oasst.languages import validate_language
from oasst.text import hidden_as_text, validate_name


class User(AbstractUser):
    # AbstractUser's username, which must also be a visible name (it is shown when there is no display name)
    username = models.CharField(
        "username", max_length=150, unique=True,
        help_text="Required. 150 characters or fewer. Letters, digits and @/./+/-/_ only.",
        validators=[AbstractUser.username_validator, validate_name],
        error_messages={"unique": "A user with that username already exists."},
    )
    display_name = models.CharField(max_length=64, blank=True, validators=[validate_name])
    preferred_language = models.CharField(max_length=16, default="en", validators=[validate_language])
    tos_accepted_at = models.DateTimeField(null=True, blank=True)
    show_on_leaderboard = models.BooleanField(default=True)
    is_banned = models.BooleanField(default=False)
    ban_reason = models.TextField(blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    streak_days = models.PositiveIntegerField(default=0)
    streak_last_day_at = models.DateTimeField(
        null=True, blank=True, help_text="When the current streak last gained a day."
    )
    moderator_notes = models.TextField(blank=True, help_text="Seen by moderators only.")

    class Meta:
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

    actor = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="moderation_events")
    action = models.CharField(max_length=48, db_index=True)
    target_type = models.CharField(max_length=16)
    target_id = models.CharField(max_length=64, db_index=True)
    reason = models.TextField(blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type} {self.target_id}"
