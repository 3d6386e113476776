"""Writing the moderators' audit log: every moderation service calls this, in its transaction."""

from __future__ import annotations

from oasst.models import ModerationEvent, User


def moderation_record(*, actor: User | None, action: str, target_type: str, target_id, reason: str = "",
                      before: dict | None = None, after: dict | None = None) -> ModerationEvent:
    return ModerationEvent.objects.create(
        actor=actor, action=action, target_type=target_type, target_id=str(target_id), reason=reason,
        before=before or {}, after=after or {},
    )
