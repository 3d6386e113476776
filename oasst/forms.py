"""Forms of the profile pages; the services re-check everything they are given."""

from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from oasst.languages import language_choices
from oasst.services import DISPLAY_NAME_MAX


class ProfileSettingsForm(forms.Form):
    display_name = forms.CharField(
        label=_("Display name"), max_length=DISPLAY_NAME_MAX,
        help_text=_("Shown on the leaderboard and in the header instead of your username."))
    preferred_language = forms.ChoiceField(
        label=_("Task language"), choices=language_choices,
        help_text=_("The language your tasks are in, unless you pick another one for a session."))
    show_on_leaderboard = forms.BooleanField(label=_("Show me on the leaderboard"), required=False)
    ui_language = forms.ChoiceField(
        label=_("Interface language"), required=False,
        # the languages by their own names (settings.LANGUAGES), read when the form is built
        choices=lambda: [("", _("Follow my task language")), *settings.LANGUAGES],
        help_text=_("The language of menus, buttons and pages. Following your task language falls back "
                    "to your browser's language when the interface is not translated into it."))

    # service error code -> the field it belongs to
    ERROR_FIELDS = {
        "invalid_display_name": "display_name",
        "empty_display_name": "display_name",
        "display_name_too_long": "display_name",
        "invalid_language": "preferred_language",
        "invalid_ui_language": "ui_language",
    }


class AccountDeleteForm(forms.Form):
    username = forms.CharField(label=_("Type your username to confirm"), max_length=150, strip=True)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["username"].help_text = format_html(_("Your username is <strong>{}</strong>."), user.username)
        self.fields["username"].widget.attrs.update({"autocomplete": "off", "spellcheck": "false"})

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if username != self.user.username:
            raise ValidationError(_("That is not your username."), code="username_mismatch")
        return username


LOGIN_MAX_LENGTH = 254  # an email address at most (a username is 150)


class LoginForm(AllauthLoginForm):
    """allauth's log-in form, its username-or-email field bounded: unbounded, a long one reached the
    database (on SQLite a 500: "LIKE or GLOB pattern too complex")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        login = self.fields["login"]
        login.max_length = LOGIN_MAX_LENGTH
        login.validators.append(MaxLengthValidator(LOGIN_MAX_LENGTH))
        login.widget.attrs["maxlength"] = str(LOGIN_MAX_LENGTH)
        login.label = _("Username or email")  # allauth's "Login" is the action's name, not the field's
        if "remember" in self.fields:
            self.fields["remember"].label = _("Remember me")


class SignupForm(AllauthSignupForm):
    """allauth's sign-up form, its honeypot field hidden by a class instead of the style attribute
    allauth gives it: the Content-Security-Policy blocks style attributes, which would show the trap."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        honeypot = self.fields.get(settings.ACCOUNT_SIGNUP_FORM_HONEYPOT_FIELD or "")
        if honeypot is not None:
            honeypot.widget.attrs.pop("style", None)
            honeypot.widget.attrs.update({"class": "honeypot", "aria-hidden": "true"})
