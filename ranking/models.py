"""Rankings: one user's ordering of one parent's replies (or "not rankable")."""

from django.conf import settings
from django.db import models


class Ranking(models.Model):
    parent = models.ForeignKey("tasks.Message", on_delete=models.CASCADE, related_name="rankings")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="rankings")
    task = models.OneToOneField("tasks.Task", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="ranking")
    ranking = models.JSONField(default=list, help_text="Reply ids, best first; empty when not rankable.")
    not_rankable = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["parent", "user"], name="ranking_once_per_user")]

    def __str__(self) -> str:
        return f"ranking of {self.parent_id} by {self.user_id}"
