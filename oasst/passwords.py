"""What a new password does besides being checked: it revokes the API token the old one gave out.

Django calls `password_changed()` on every configured password validator after a user's new password
is saved (`AbstractBaseUser.save` after `set_password`), whichever way it was set: allauth's reset,
change and set pages, the admin's password form, `manage.py changepassword`. That is the one hook
every path goes through, so the revocation sits here rather than in each view. The user's other
sessions need nothing: Django's session auth hash derives from the password hash, so they end on
their next request, and allauth keeps the session that changed the password by updating its hash.
"""

from django.utils.translation import gettext as _

from oasst import services


class RevokeApiTokenOnPasswordChange:
    """Listed in AUTH_PASSWORD_VALIDATORS for its `password_changed` hook; it refuses no password."""

    def validate(self, password, user=None) -> None:
        return None

    def password_changed(self, password, user=None) -> None:
        if user is not None and user.pk is not None:
            services.api_token_revoke_after_password_change(user=user)

    def get_help_text(self) -> str:
        return _("A new password revokes your API token and signs you out on your other devices.")
