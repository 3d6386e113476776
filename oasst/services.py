"""Writers of a user's own account: profile settings, API token, the download of their data, and
deleting the account (SPEC: "A deleted user is anonymised; their messages remain unless purged")."""

from __future__ import annotations

import secrets
from importlib import import_module

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from oasst.audit import check_permission, clean_reason, moderation_record
from oasst.celery import enqueue_on_commit
from oasst.errors import Conflict, Forbidden, NotFound, ServiceError
from oasst.languages import LANGUAGES
from oasst.models import ModerationEvent, User
from oasst.text import clean_name
from ranking.models import ContributionEvent, LeaderboardEntry, Ranking, UserScore
from tasks.jobs import tasks_expire_job
from tasks.models import EmojiReaction, Message, MessageReport, MessageRevision, Review, Task
from tasks.selectors import open_tasks
from training.models import TrainingRun

DISPLAY_NAME_MAX = 64
EXPORT_FORMAT = "oasst-user-data"
EXPORT_VERSION = 1


def user_locked(user_id, *, no_key: bool = True) -> User:
    """Lock a user row (FOR NO KEY UPDATE unless a key column such as the username changes)."""
    return User.objects.select_for_update(no_key=no_key).get(pk=user_id)


def check_account_active(user: User) -> None:
    if not user.is_active:
        raise Conflict("This account has been deleted.", code="account_deleted")


def clean_display_name(display_name: object) -> str:
    if not isinstance(display_name, str):
        raise ServiceError("The display name must be text.", code="invalid_display_name")
    display_name = display_name.strip()
    if not display_name:
        raise ServiceError("Enter a display name.", code="empty_display_name")
    if len(display_name) > DISPLAY_NAME_MAX:
        raise ServiceError(f"The display name is longer than {DISPLAY_NAME_MAX} characters.",
                           code="display_name_too_long")
    return clean_name(display_name, what="display name", code="invalid_display_name",
                      empty_code="empty_display_name")


@transaction.atomic
def profile_update(*, user: User, display_name: object, preferred_language: object,
                   show_on_leaderboard: bool) -> User:
    check_account_active(user)
    display_name = clean_display_name(display_name)
    if preferred_language not in LANGUAGES:
        raise ServiceError(f"Unknown language {preferred_language!r}.", code="invalid_language")
    user.display_name = display_name
    user.preferred_language = preferred_language
    user.show_on_leaderboard = bool(show_on_leaderboard)
    user.save(update_fields=["display_name", "preferred_language", "show_on_leaderboard"])
    return user


@transaction.atomic
def api_token_rotate(*, user: User) -> str:
    """Create the user's API token, or replace the one they have; returns the new key."""
    locked = user_locked(user.pk)
    check_account_active(locked)
    Token.objects.filter(user=locked).delete()
    return Token.objects.create(user=locked).key


@transaction.atomic
def api_token_revoke(*, user: User) -> None:
    user_locked(user.pk)
    deleted, _ = Token.objects.filter(user=user).delete()
    if not deleted:
        raise NotFound("You have no API token to revoke.", code="no_token")


def _rows(queryset, *fields) -> list[dict]:
    return list(queryset.values(*fields))


def _user_sessions(user: User) -> list:
    """The user's unexpired sessions in a database-backed store (other stores cannot be listed)."""
    if not settings.SESSION_ENGINE.endswith((".db", ".cached_db")):
        return []
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    return [session for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator(chunk_size=2000)
            if store.decode(session.session_data).get("_auth_user_id") == str(user.pk)]


@transaction.atomic
def user_data_export(*, user: User) -> dict:
    """Everything stored about the user, for "download my data". Other people appear only as ids of
    the messages the user reviewed, ranked or reacted to; the tasks' payloads (other people's text),
    the text other people wrote that a moderator's edit replaced, the names in the admin's history,
    and credentials (the API token's key, session keys) are left out. tests/oasst/test_privacy.py
    checks that every model pointing at a user has its section here."""
    user = User.objects.get(pk=user.pk)
    token = Token.objects.filter(user=user).values("created").first()
    messages = _rows(
        Message.objects.filter(author=user).order_by("created_at"),
        "id", "tree_id", "tree__state", "parent_id", "role", "text", "lang", "depth", "created_at", "client_id",
        "review_count", "review_result", "rank", "deleted", "synthetic", "model_name", "emojis", "labels",
        "red_flags", "edited",
    )
    revisions: dict = {}
    for revision in MessageRevision.objects.filter(message__author=user).order_by("created_at").values(
            "message_id", "text", "created_at"):
        revisions.setdefault(revision.pop("message_id"), []).append(revision)
    for message in messages:
        message["tree_state"] = message.pop("tree__state")
        message["revisions"] = revisions.get(message["id"], [])
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": timezone.now(),
        "account": {
            "id": user.pk, "username": user.username, "email": user.email, "display_name": user.display_name,
            "first_name": user.first_name, "last_name": user.last_name,
            "preferred_language": user.preferred_language, "show_on_leaderboard": user.show_on_leaderboard,
            "date_joined": user.date_joined, "last_login": user.last_login,
            "tos_accepted_at": user.tos_accepted_at, "last_activity_at": user.last_activity_at,
            "streak_days": user.streak_days, "streak_last_day_at": user.streak_last_day_at,
            "is_banned": user.is_banned, "ban_reason": user.ban_reason, "is_staff": user.is_staff,
            "groups": sorted(user.groups.values_list("name", flat=True)),
            "permissions": sorted(f"{app}.{codename}" for app, codename in user.user_permissions.values_list(
                "content_type__app_label", "codename")),
            "api_token": {"exists": token is not None, "created": token["created"] if token else None},
        },
        "email_addresses": _rows(EmailAddress.objects.filter(user=user).order_by("pk"),
                                 "email", "verified", "primary"),
        "social_accounts": _rows(SocialAccount.objects.filter(user=user).order_by("pk"),
                                 "provider", "uid", "date_joined", "last_login", "extra_data"),
        "messages": messages,
        "reviews": _rows(Review.objects.filter(user=user).order_by("created_at"),
                         "message_id", "task_id", "mode", "labels", "text", "report", "created_at"),
        "rankings": _rows(Ranking.objects.filter(user=user).order_by("created_at"),
                          "parent_id", "task_id", "ranking", "not_rankable", "agreement", "created_at"),
        "reactions": _rows(EmojiReaction.objects.filter(user=user).order_by("created_at"),
                           "message_id", "emoji", "created_at"),
        "message_reports": _rows(MessageReport.objects.filter(user=user).order_by("created_at", "pk"),
                                 "message_id", "reason", "created_at"),
        "tasks": _rows(Task.objects.filter(user=user).order_by("created_at"),
                       "id", "type", "lang", "item_id", "tree_id", "created_at", "expires_at", "acked_at",
                       "skipped", "skip_reason", "done", "done_at", "expired"),
        "scores": {score["frame"]: {k: v for k, v in score.items() if k != "frame"}
                   for score in UserScore.objects.filter(user=user).values(
                       "frame", "score", "counts", "breakdown", "updated_at")},
        "contribution_events": _rows(ContributionEvent.objects.filter(user=user).order_by("created_at", "pk"),
                                     "kind", "message_id", "created_at"),
        "leaderboard": _rows(LeaderboardEntry.objects.filter(user=user).order_by("frame"),
                             "frame", "rank", "score", "level", "built_at"),
        "sessions": [{"expires_at": session.expire_date} for session in _user_sessions(user)],
        "moderation_actions": _rows(ModerationEvent.objects.filter(actor=user).order_by("created_at", "pk"),
                                    "action", "target_type", "target_id", "reason", "created_at"),
        "message_edits": _rows(MessageRevision.objects.filter(editor=user).order_by("created_at", "pk"),
                               "message_id", "created_at"),
        "admin_actions": _rows(LogEntry.objects.filter(user=user).order_by("action_time", "pk"),
                               "action_time", "action_flag", "content_type__app_label", "content_type__model",
                               "object_id", "change_message"),
        "training_runs": _rows(TrainingRun.objects.filter(launched_by=user).order_by("created_at", "pk"),
                               "id", "kind", "status", "data_file", "created_at", "finished_at"),
    }


def _sessions_delete(user: User) -> int:
    """Delete the user's stored sessions. Sessions carry no user column, so a database-backed store
    is scanned; other stores are left to expire (an unusable password already invalidates them)."""
    engine = import_module(settings.SESSION_ENGINE)
    keys = [session.session_key for session in _user_sessions(user)]
    for key in keys:
        engine.SessionStore(session_key=key).delete()
    return len(keys)


@transaction.atomic
def logout_everywhere(*, user: User) -> dict[str, int]:
    """Revoke every credential the user holds: all their sessions (this browser's too) and their API
    token. Returns how many of each were removed. The password stays; logging in again works."""
    locked = user_locked(user.pk)
    tokens, _ = Token.objects.filter(user=locked).delete()
    return {"sessions": _sessions_delete(locked), "tokens": tokens}


@transaction.atomic
def api_token_revoke_after_password_change(*, user: User) -> int:
    """A new password ends the API token the old one gave out; returns how many were deleted. The other
    sessions end by themselves (oasst.passwords); this one, where allauth keeps it, stays."""
    deleted, _ = Token.objects.filter(user_id=user.pk).delete()
    return deleted


@transaction.atomic
def account_delete(*, user: User) -> User:
    """Anonymise the account; its messages, reviews and rankings remain (SPEC: unless purged).

    The user row is kept, stripped of everything that identifies a person, instead of being
    deleted or detached from the messages (author set to null): the messages keep a stable
    pseudonymous author, so an export still tells that two replies came from one person, and the
    rules that read the author (one reply per parent, no review of one's own message, a moderator's
    purge) keep working. The username becomes a random `deleted-<hex>`; email, names, ban reason,
    password, staff rights, email addresses, social accounts, API token, sessions, scores and
    leaderboard rows are removed; the account can never log in again; the admin's history of changes
    to the account names it by its new username. What stays is tied to that row only: messages,
    reviews, rankings, reactions (their counts are on others' messages), reports (the flagged queue
    counts them), tasks, contribution events,
    moderation actions, edits and training runs the user made, and the ban flag. Open tasks are
    expired so the work they reserved is released. tests/oasst/test_privacy.py checks that every
    model pointing at a user is handled here.
    """
    locked = user_locked(user.pk, no_key=False)
    check_account_active(locked)
    if locked.is_superuser:
        raise Forbidden("An administrator's account cannot delete itself; ask another administrator.",
                        code="admin_account")
    locked.username = f"deleted-{secrets.token_hex(8)}"
    locked.email = ""
    locked.display_name = ""
    locked.first_name = ""
    locked.last_name = ""
    locked.ban_reason = ""
    locked.moderator_notes = ""
    locked.set_unusable_password()
    locked.is_active = False
    locked.is_staff = False
    locked.show_on_leaderboard = False
    locked.last_login = None
    locked.save()
    locked.groups.clear()
    locked.user_permissions.clear()
    EmailAddress.objects.filter(user=locked).delete()
    SocialAccount.objects.filter(user=locked).delete()
    Token.objects.filter(user=locked).delete()
    UserScore.objects.filter(user=locked).delete()
    LeaderboardEntry.objects.filter(user=locked).delete()
    LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(User), object_id=str(locked.pk)).update(
        object_repr=locked.username)
    if open_tasks(user=locked).update(expires_at=timezone.now()):
        enqueue_on_commit(tasks_expire_job)
    _sessions_delete(locked)
    user.refresh_from_db()
    return user


# --- Moderation of users ------------------------------------------------------------------------


# What a group makes an account, in a refusal ("Only a superuser can ban a moderator.").
ACCOUNT_KIND_BY_GROUP = {"moderators": "a moderator", "researchers": "a researcher"}


def protected_account_kind(user: User) -> str | None:
    """What makes an account more than a contributor's (a superuser, a group member, staff), or None:
    moderating such an account is a superuser's decision."""
    if user.is_superuser:
        return "a superuser"
    group = user.groups.order_by("name").values_list("name", flat=True).first()
    if group is not None:
        return ACCOUNT_KIND_BY_GROUP.get(group, f"a member of the {group} group")
    return "a staff account" if user.is_staff else None


def check_may_moderate_user(actor: User, target: User, *, action: str) -> None:
    """Moderators act on contributors only: a moderator banning, anonymising or renaming a fellow
    moderator, a researcher or an administrator would be a takeover of the roles above them."""
    kind = protected_account_kind(target)
    if kind is not None and not actor.is_superuser:
        raise Forbidden(f"Only a superuser can {action} {kind}.", code="protected_account")


def _moderated_user(actor: User, user_id, *, action: str, lock: bool = True) -> User:
    """Check the moderator's permission, then (lock and) load the user they act on, and check that
    the moderator may act on them."""
    check_permission(actor, "oasst.moderate_user")
    try:
        target = user_locked(user_id) if lock else User.objects.get(pk=user_id)
    except (User.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such user.", code="user_not_found") from None
    if action == "ban" and (target.is_superuser or target.pk == actor.pk):
        raise Forbidden("Administrators and you yourself cannot be banned here.", code="cannot_ban")
    if action == "anonymise" and target.is_superuser:
        raise Forbidden("An administrator's account cannot be anonymised; take away its superuser status first.",
                        code="cannot_anonymise_admin")
    check_may_moderate_user(actor, target, action=action)
    return target


@transaction.atomic
def user_ban(*, actor: User, user_id, reason: str = "") -> User:
    """Ban a user: from now on they get no tasks and cannot submit; their open tasks are released."""
    reason = clean_reason(reason)
    target = _moderated_user(actor, user_id, action="ban")
    before = {"is_banned": target.is_banned, "ban_reason": target.ban_reason}
    target.is_banned, target.ban_reason = True, reason
    target.save(update_fields=["is_banned", "ban_reason"])
    if open_tasks(user=target).update(expires_at=timezone.now()):
        enqueue_on_commit(tasks_expire_job)
    moderation_record(actor=actor, action="user_ban", target_type="user", target_id=target.pk, reason=reason,
                      before=before, after={"is_banned": True, "ban_reason": target.ban_reason})
    return target


@transaction.atomic
def user_unban(*, actor: User, user_id, reason: str = "") -> User:
    target = _moderated_user(actor, user_id, action="unban")
    before = {"is_banned": target.is_banned, "ban_reason": target.ban_reason}
    target.is_banned, target.ban_reason = False, ""
    target.save(update_fields=["is_banned", "ban_reason"])
    moderation_record(actor=actor, action="user_unban", target_type="user", target_id=target.pk, reason=reason,
                      before=before, after={"is_banned": False})
    return target


def user_purge_messages(*, actor: User, user_id, since=None, until=None, reason: str = "") -> int:
    """Soft-delete a user's messages (each with its subtree) created within [since, until]; returns
    how many messages were deleted. Each message is deleted in its own short transaction."""
    from tasks.services import message_delete

    _moderated_user(actor, user_id, action="purge the messages of", lock=False)
    if since and until and since > until:
        raise ServiceError("The start of the range is after its end.", code="invalid_range")
    messages = Message.objects.filter(author_id=user_id, deleted=False)
    if since:
        messages = messages.filter(created_at__gte=since)
    if until:
        messages = messages.filter(created_at__lte=until)
    deleted = 0
    for message_id in messages.order_by("depth").values_list("pk", flat=True):
        if Message.objects.filter(pk=message_id, deleted=False).exists():  # not already gone with a parent
            deleted += message_delete(actor=actor, message_id=message_id, reason=reason or "purge")
    moderation_record(actor=actor, action="user_purge", target_type="user", target_id=user_id, reason=reason,
                      after={"deleted": deleted, "since": since.isoformat() if since else None,
                             "until": until.isoformat() if until else None})
    return deleted


@transaction.atomic
def user_anonymise(*, actor: User, user_id, reason: str = "") -> User:
    """A moderator deletes an account the way its owner would (see account_delete), audited."""
    target = _moderated_user(actor, user_id, action="anonymise")
    if target.pk == actor.pk:
        raise Forbidden("Delete your own account from your profile.", code="cannot_anonymise_self")
    before = {"username": target.username}
    account_delete(user=target)
    moderation_record(actor=actor, action="user_anonymise", target_type="user", target_id=target.pk, reason=reason,
                      before=before, after={"username": target.username})
    return target
