"""Moderation plumbing shared by the apps' services: the permission check, and the audit log that
every moderation service writes in its transaction."""

from __future__ import annotations

from django.utils.translation import gettext as _

from oasst.errors import Forbidden, ServiceError
from oasst.models import ModerationEvent, User
from oasst.text import check_text


def check_permission(actor: User, permission: str) -> None:
    """Moderation needs an active staff account holding the permission (superusers hold all)."""
    if not (actor and actor.is_active and actor.is_staff and actor.has_perm(permission)):
        raise Forbidden(_("You are not allowed to do this."), code="not_moderator")



MAX_REASON_LENGTH = 500


def clean_reason(reason: str | None) -> str:
    """A moderation reason, stripped; refused beyond 500 characters or with control characters."""
    reason = (reason or "").strip()
    check_text(reason, what="reason", code="invalid_reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise ServiceError(_("A reason is at most %(limit)s characters.") % {"limit": MAX_REASON_LENGTH},
                           code="reason_too_long")
    return reason


def moderation_record(*, actor: User | None, action: str, target_type: str, target_id, reason: str = "",
                      before: dict | None = None, after: dict | None = None) -> ModerationEvent:
    """One audit entry; the reason is checked here too, whoever the caller."""
    reason = clean_reason(reason)
    return ModerationEvent.objects.create(
        actor=actor, action=action, target_type=target_type, target_id=str(target_id), reason=reason,
        before=before or {}, after=after or {},
    )
