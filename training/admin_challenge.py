"""Champion / challenger in the admin: a challenge run's figures and decision on its page, the "Run a challenge
now" button on the runs list (moderators holding training.promote_trainingrun), and the "Cancel" step of any
queued or running run (training.launch_run) behind a confirmation page that asks for a reason. The services
(training.challenge, training.services) check and record each step."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from oasst.moderation_forms import confirm_then_apply, reason_form
from training import services
from training.challenge import challenge_launch
from training.models import TrainingRun

CANCEL_REASONS = [("started by mistake", _("Started by mistake")), ("taking too long", _("Taking too long"))]


def figure(value) -> str:
    return "-" if value is None else f"{value:.3f}"


class ChallengeAdminMixin:
    """For TrainingRunAdmin: the `challenge` field, the `challenge/` and `<id>/cancel/` pages."""

    def has_cancel_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and request.user.has_perm(
            services.CANCEL_PERMISSION)

    @admin.display(description=_("champion / challenger"))
    def challenge(self, run: TrainingRun) -> str:
        """The figures on the same held-out pairs and the decision, as far as the challenge got."""
        if run.kind != TrainingRun.Kind.CHALLENGE:
            return format_html("{}", "-")
        facts = (run.metrics or {}).get("challenge") or {}

        def run_link(run_id) -> str:
            if not run_id:
                return gettext("none")
            return format_html('<a href="{}">{}</a>', reverse("admin:training_trainingrun_change", args=[run_id]),
                               gettext("run %(id)s") % {"id": run_id})

        rows = [
            (gettext("champion (in service at the start)"), run_link(facts.get("champion_run"))),
            (gettext("challenger"), run_link(facts.get("challenger_run"))),
            (gettext("export"), ngettext("%(file)s (%(n)s tree)", "%(file)s (%(n)s trees)", facts["export_trees"])
             % {"file": facts["export_file"], "n": facts["export_trees"]} if "export_file" in facts else "-"),
            (gettext("held-out pairs (the challenger's)"), facts.get("pairs", "-")),
            (gettext("champion accuracy"), figure(facts.get("champion_accuracy"))),
            (gettext("challenger accuracy"), figure(facts.get("challenger_accuracy"))),
            (gettext("length rule"), figure(facts.get("length_rule"))),
            (gettext("margin"), facts.get("margin", "-")),
            (gettext("decision"), facts.get("reason") or run.error or gettext("not decided yet")),
        ]
        return format_html_join("", "<div>{}: {}</div>", rows)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The Cancel button on a queued or running run's page, for a user who may cancel it."""
        run = TrainingRun.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        cancel = ""
        if run is not None and run.status in services.ACTIVE and self.has_cancel_permission(request):
            cancel = reverse("admin:training_trainingrun_cancel", args=[run.pk])
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "cancel_url": cancel})

    def changelist_view(self, request, extra_context=None):
        allowed = self.has_promote_permission(request)
        context = {"challenge_url": reverse("admin:training_trainingrun_challenge") if allowed else ""}
        return super().changelist_view(request, {**(extra_context or {}), **context})

    def get_urls(self):
        return [
            path("challenge/", self.admin_site.admin_view(require_POST(self.challenge_view)),
                 name="training_trainingrun_challenge"),
            path("<int:run_id>/cancel/", self.admin_site.admin_view(self.cancel_view),
                 name="training_trainingrun_cancel"),
            *super().get_urls(),
        ]

    def challenge_view(self, request):
        """Run a challenge now: queued on the training queue, then its page; a refusal says why."""
        if not self.has_promote_permission(request):
            raise PermissionDenied
        try:
            run = challenge_launch(actor=request.user)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return redirect("admin:training_trainingrun_changelist")
        self.message_user(request, gettext("%(run)s queued on the training queue.") % {"run": run}, messages.SUCCESS)
        return redirect("admin:training_trainingrun_change", run.pk)

    def cancel_view(self, request, run_id: int):
        """GET: the confirmation page; POST with a reason: the run cancelled (a challenge with its challenger)."""
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is None:
            raise Http404("no such run")
        back = reverse("admin:training_trainingrun_change", args=[run.pk])

        def apply(data: dict) -> None:
            try:
                services.training_run_cancel(run=run, actor=request.user, reason=data["full_reason"])
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.ERROR)
            else:
                self.message_user(request, gettext("Cancelled: %(run)s.") % {"run": run}, messages.SUCCESS)

        form = reason_form(request, CANCEL_REASONS, applied=request.method == "POST")
        response = confirm_then_apply(self, request, [run], form=form, title=gettext("Cancel the run"), action="",
                                      back=back, apply=apply)
        return response or HttpResponseRedirect(back)
