"""allauth's account adapter for this site: failed log-ins count per account, not per identifier."""

from allauth.account import app_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.app_settings import LoginMethod
from allauth.account.utils import filter_users_by_email, filter_users_by_username
from django.contrib.sites.shortcuts import get_current_site


def login_account_id(identifier: str) -> int | None:
    """The account a log-in identifier names, as allauth's backend looks it up: by email first (when
    email log-in is on), then by username, case-insensitively; None when it names none."""
    if LoginMethod.EMAIL in app_settings.LOGIN_METHODS:
        by_email = filter_users_by_email(identifier, prefer_verified=True)
        if by_email:
            return by_email[0].pk
    if LoginMethod.USERNAME in app_settings.LOGIN_METHODS:
        by_username = [user.pk for user in filter_users_by_username(identifier)
                       if user.get_username().lower() == identifier.lower()]
        if len(by_username) == 1:
            return by_username[0]
    return None


class AccountAdapter(DefaultAccountAdapter):
    def _get_login_attempts_cache_key(self, request, **credentials) -> str:
        """allauth keys its per-account `login_failed` limit (5 in 5 minutes) on the identifier typed,
        so an account's username and its email each had their own 5 guesses. Key it on the account the
        identifier names; an identifier that names none keeps allauth's key. allauth makes this key in
        this one method, both to count failures (`pre_authenticate`, the log-in page and
        POST /api/v1/auth/token/) and to clear them after a password reset, so both follow."""
        identifier = credentials.get("email") or credentials.get("username") or ""
        account_id = login_account_id(identifier) if identifier else None
        if account_id is None:
            return super()._get_login_attempts_cache_key(request, **credentials)
        return f"{get_current_site(request).domain}:account:{account_id}"
