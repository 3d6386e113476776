"""Moderators acting on users: ban, unban, anonymise (delete the account as its owner would), and the
checks that keep moderators to contributors' accounts. Each checks the permission and writes the
audit log. What a ban or a deletion does to the apps above (open tasks, scores) happens in their
receivers of oasst.signals; purging a user's messages is content moderation:
tasks.services.moderation.user_purge_messages."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext, pgettext_lazy

from oasst.audit import check_permission, clean_reason, moderation_record
from oasst.errors import Forbidden, NotFound
from oasst.models import User
from oasst.services import account_delete, user_locked
from oasst.signals import user_banned

# What a group makes an account, in a refusal ("Only a superuser can ban a moderator.").
ACCOUNT_KIND_BY_GROUP = {"moderators": pgettext_lazy("the object of a refusal", "a moderator"),
                         "researchers": pgettext_lazy("the object of a refusal", "a researcher")}
# The refusal, per action, as a whole sentence for the translators; %(account)s is one of the kinds above.
REFUSALS = {
    "ban": gettext_lazy("Only a superuser can ban %(account)s."),
    "unban": gettext_lazy("Only a superuser can unban %(account)s."),
    "anonymise": gettext_lazy("Only a superuser can anonymise %(account)s."),
    "edit": gettext_lazy("Only a superuser can edit %(account)s."),
    "purge the messages of": gettext_lazy("Only a superuser can purge the messages of %(account)s."),
}


def protected_account_kind(user: User) -> str | None:
    """What makes an account more than a contributor's (a superuser, a group member, staff), or None:
    moderating such an account is a superuser's decision."""
    if user.is_superuser:
        return pgettext("the object of a refusal", "a superuser")
    group = user.groups.order_by("name").values_list("name", flat=True).first()
    if group is not None:
        if group in ACCOUNT_KIND_BY_GROUP:
            return str(ACCOUNT_KIND_BY_GROUP[group])
        return pgettext("the object of a refusal", "a member of the %(group)s group") % {"group": group}
    return pgettext("the object of a refusal", "a staff account") if user.is_staff else None


def check_may_moderate_user(actor: User, target: User, *, action: str) -> None:
    """Moderators act on contributors only: a moderator banning, anonymising or renaming a fellow
    moderator, a researcher or an administrator would be a takeover of the roles above them."""
    kind = protected_account_kind(target)
    if kind is not None and not actor.is_superuser:
        refusal = REFUSALS.get(action, gettext_lazy("Only a superuser can do this to %(account)s."))
        raise Forbidden(str(refusal) % {"account": kind}, code="protected_account")


def moderated_user(actor: User, user_id, *, action: str, lock: bool = True) -> User:
    """Check the moderator's permission, then (lock and) load the user they act on, and check that
    the moderator may act on them."""
    check_permission(actor, "oasst.moderate_user")
    try:
        target = user_locked(user_id) if lock else User.objects.get(pk=user_id)
    except (User.DoesNotExist, ValueError, TypeError):
        raise NotFound(_("No such user."), code="user_not_found") from None
    if action == "ban" and (target.is_superuser or target.pk == actor.pk):
        raise Forbidden(_("Administrators and you yourself cannot be banned here."), code="cannot_ban")
    if action == "anonymise" and target.is_superuser:
        raise Forbidden(_("An administrator's account cannot be anonymised; take away its superuser status first."),
                        code="cannot_anonymise_admin")
    check_may_moderate_user(actor, target, action=action)
    return target


@transaction.atomic
def user_ban(*, actor: User, user_id, reason: str = "") -> User:
    """Ban a user: from now on they get no tasks and cannot submit; their open tasks are released."""
    reason = clean_reason(reason)
    target = moderated_user(actor, user_id, action="ban")
    before = {"is_banned": target.is_banned, "ban_reason": target.ban_reason}
    target.is_banned, target.ban_reason = True, reason
    target.save(update_fields=["is_banned", "ban_reason"])
    user_banned.send(sender=User, user=target)  # tasks releases their open tasks
    moderation_record(actor=actor, action="user_ban", target_type="user", target_id=target.pk, reason=reason,
                      before=before, after={"is_banned": True, "ban_reason": target.ban_reason})
    return target


@transaction.atomic
def user_unban(*, actor: User, user_id, reason: str = "") -> User:
    target = moderated_user(actor, user_id, action="unban")
    before = {"is_banned": target.is_banned, "ban_reason": target.ban_reason}
    target.is_banned, target.ban_reason = False, ""
    target.save(update_fields=["is_banned", "ban_reason"])
    moderation_record(actor=actor, action="user_unban", target_type="user", target_id=target.pk, reason=reason,
                      before=before, after={"is_banned": False})
    return target


@transaction.atomic
def user_anonymise(*, actor: User, user_id, reason: str = "") -> User:
    """A moderator deletes an account the way its owner would (see account_delete), audited."""
    target = moderated_user(actor, user_id, action="anonymise")
    if target.pk == actor.pk:
        raise Forbidden(_("Delete your own account from your profile."), code="cannot_anonymise_self")
    before = {"username": target.username}
    account_delete(user=target)
    moderation_record(actor=actor, action="user_anonymise", target_type="user", target_id=target.pk, reason=reason,
                      before=before, after={"username": target.username})
    return target
