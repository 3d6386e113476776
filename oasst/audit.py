"""Moderation plumbing shared by the apps' services: the permission check, and the audit log that
every moderation service writes in its transaction."""

from __future__ import annotations

from oasst.errors import Forbidden
from oasst.models import ModerationEvent, User


def check_permission(actor: User, permission: str) -> None:
    """Moderation needs an active staff account holding the permission (superusers hold all)."""
    if not (actor and actor.is_active and actor.is_staff and actor.has_perm(permission)):
        raise Forbidden("You are not allowed to do this.", code="not_moderator")



def moderation_record(*, actor: User | None, action: str, target_type: str, target_id, reason: str = "",
                      before: dict | None = None, after: dict | None = None) -> ModerationEvent:
    return ModerationEvent.objects.create(
        actor=actor, action=action, target_type=target_type, target_id=str(target_id), reason=reason,
        before=before or {}, after=after or {},
    )
