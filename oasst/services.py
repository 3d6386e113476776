"""Writers of a user's own account: profile settings, API token, accepting the terms, the download of
their data, and deleting the account (SPEC: "A deleted user is anonymised; their messages remain
unless purged"). The apps above oasst add their part through oasst.signals: their sections of the
data download (user_data_requested) and what deleting an account does to their rows
(account_deleted). Moderators acting on users: oasst.moderation."""

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
from django.utils.translation import gettext
from rest_framework.authtoken.models import Token

from oasst.errors import Conflict, Forbidden, NotFound, ServiceError
from oasst.languages import LANGUAGES, ui_languages
from oasst.models import ModerationEvent, User
from oasst.signals import account_deleted, user_data_requested
from oasst.text import clean_name

DISPLAY_NAME_MAX = 64
EXPORT_FORMAT = "oasst-user-data"
EXPORT_VERSION = 1


def user_locked(user_id, *, no_key: bool = True) -> User:
    """Lock a user row (FOR NO KEY UPDATE unless a key column such as the username changes)."""
    return User.objects.select_for_update(no_key=no_key).get(pk=user_id)


def check_account_active(user: User) -> None:
    if not user.is_active:
        raise Conflict(gettext("This account has been deleted."), code="account_deleted")


def clean_display_name(display_name: object) -> str:
    if not isinstance(display_name, str):
        raise ServiceError(gettext("The display name must be text."), code="invalid_display_name")
    display_name = display_name.strip()
    if not display_name:
        raise ServiceError(gettext("Enter a display name."), code="empty_display_name")
    if len(display_name) > DISPLAY_NAME_MAX:
        message = gettext("The display name is longer than %(limit)s characters.") % {"limit": DISPLAY_NAME_MAX}
        raise ServiceError(message, code="display_name_too_long")
    return clean_name(display_name, what="display name", code="invalid_display_name",
                      empty_code="empty_display_name")


def check_ui_language(ui_language: object) -> str:
    """An interface language: "" (follow the task language) or a code of settings.LANGUAGES."""
    if ui_language != "" and (not isinstance(ui_language, str) or ui_language not in ui_languages()):
        raise ServiceError(gettext("Unknown interface language %(code)s.") % {"code": repr(ui_language)[:40]},
                           code="invalid_ui_language")
    return ui_language


@transaction.atomic
def profile_update(*, user: User, display_name: object, preferred_language: object,
                   show_on_leaderboard: bool, ui_language: object | None = None) -> User:
    """Saves the profile settings; ui_language None leaves the interface language as it is."""
    check_account_active(user)
    display_name = clean_display_name(display_name)
    if preferred_language not in LANGUAGES:
        raise ServiceError(gettext("Unknown language %(code)s.") % {"code": repr(preferred_language)[:40]},
                           code="invalid_language")
    fields = ["display_name", "preferred_language", "show_on_leaderboard"]
    if ui_language is not None:
        user.ui_language = check_ui_language(ui_language)
        fields.append("ui_language")
    user.display_name = display_name
    user.preferred_language = preferred_language
    user.show_on_leaderboard = bool(show_on_leaderboard)
    user.save(update_fields=fields)
    return user


@transaction.atomic
def ui_language_set(*, user: User, ui_language: object) -> User:
    """The language picker, used while logged in: the choice follows the user to other devices."""
    check_account_active(user)
    user.ui_language = check_ui_language(ui_language)
    user.save(update_fields=["ui_language"])
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
        raise NotFound(gettext("You have no API token to revoke."), code="no_token")


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
    checks that every model pointing at a user has its section here or in a user_data_requested
    receiver of the app that owns the model."""
    user = User.objects.get(pk=user.pk)
    token = Token.objects.filter(user=user).values("created").first()
    data = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": timezone.now(),
        "account": {
            "id": user.pk, "username": user.username, "email": user.email, "display_name": user.display_name,
            "first_name": user.first_name, "last_name": user.last_name,
            "preferred_language": user.preferred_language, "ui_language": user.ui_language,
            "show_on_leaderboard": user.show_on_leaderboard,
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
        "sessions": [{"expires_at": session.expire_date} for session in _user_sessions(user)],
        "moderation_actions": _rows(ModerationEvent.objects.filter(actor=user).order_by("created_at", "pk"),
                                    "action", "target_type", "target_id", "reason", "created_at"),
        "admin_actions": _rows(LogEntry.objects.filter(user=user).order_by("action_time", "pk"),
                               "action_time", "action_flag", "content_type__app_label", "content_type__model",
                               "object_id", "change_message"),
    }
    for _receiver, sections in user_data_requested.send(sender=User, user=user):
        data.update(sections)
    return data


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
        raise Forbidden(gettext("An administrator's account cannot delete itself; ask another administrator."),
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
    LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(User), object_id=str(locked.pk)).update(
        object_repr=locked.username)
    account_deleted.send(sender=User, user=locked)  # scores (ranking), open tasks (tasks)
    _sessions_delete(locked)
    user.refresh_from_db()
    return user


@transaction.atomic
def tos_accept(*, user: User) -> User:
    if user.tos_accepted_at is None:
        user.tos_accepted_at = timezone.now()
        user.save(update_fields=["tos_accepted_at"])
    return user
