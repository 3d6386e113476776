"""The reason a moderator gives for each step in the admin (a quick choice, free text, or both), and
the confirmation page that asks for it before an action touches the rows it lists. The services
write the reason to the audit log."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from oasst.audit import MAX_REASON_LENGTH

# Each quick choice is stored as its value (English, whatever the moderator's language); the label is shown.
REMOVAL = [
    ("spam", _("Spam")),
    ("abusive", _("Abusive")),
    ("personal information", _("Personal information")),
    ("off-topic", _("Off-topic")),
]
RESTORE = [("deleted by mistake", _("Deleted by mistake")), ("appeal accepted", _("Appeal accepted"))]
DISMISS = [("no rule broken", _("No rule broken")), ("already handled", _("Already handled"))]
HALT = [("under review", _("Under review")), *REMOVAL]
RESUME = [("review done", _("Review done"))]
OTHER = "other"


class ModerationReasonForm(forms.Form):
    """A quick choice, free text, or both ("spam: a shop link"); "other" needs the text."""

    choice = forms.ChoiceField(label=_("Reason"), required=False, widget=forms.RadioSelect)
    reason = forms.CharField(
        label=_("Details"),
        required=False,
        max_length=MAX_REASON_LENGTH,
        help_text=_("Written to the audit log with the choice."),
    )

    def __init__(self, *args, choices: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["choice"].choices = [*choices, (OTHER, _("Other (say which below)"))]

    def clean(self):
        data = super().clean()
        choice, text = data.get("choice", ""), data.get("reason", "").strip()
        if self.errors:
            return data
        if not choice and not text:
            raise ValidationError(_("Give a reason: pick one or write it under Details."), code="empty_reason")
        if choice == OTHER and not text:
            raise ValidationError(_("Say what the other reason is."), code="empty_reason")
        full = text if choice in ("", OTHER) else f"{choice}: {text}" if text else choice
        if len(full) > MAX_REASON_LENGTH:
            raise ValidationError(
                _("A reason is at most %(n)s characters."), params={"n": MAX_REASON_LENGTH}, code="reason_too_long"
            )
        data["full_reason"] = full
        return data


def confirm_then_apply(
    modeladmin,
    request,
    queryset,
    *,
    form: forms.Form,
    title: str,
    action: str,
    apply: Callable[[dict], None],
    listed=None,
    help_text: str = "",
    back: str = "",
) -> TemplateResponse | None:
    """The second step of an admin action: the page lists what the action touches (`listed`, else the
    selected rows) and asks for its form; the action runs only once the form is bound (the moderator
    applied it) and valid."""
    if form.is_bound and form.is_valid():
        apply(form.cleaned_data)
        return None
    return TemplateResponse(
        request,
        "admin/action_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "form": form,
            "objects": queryset,
            "listed": queryset if listed is None else listed,
            "action": action,
            "help": help_text,
            "opts": modeladmin.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "back": back or request.get_full_path(),
            "next": request.POST.get("next") or request.GET.get("next", ""),
        },
        status=400 if form.is_bound else 200,
    )


def reason_form(request, choices: list[tuple[str, str]], *, applied: bool | None = None) -> ModerationReasonForm:
    """Bound to the POST once the moderator applies it (by default: posted with the "apply" button)."""
    applied = "apply" in request.POST if applied is None else applied
    return ModerationReasonForm(request.POST if applied else None, choices=choices)
