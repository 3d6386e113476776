"""The reward model in service, on a training run's admin page: its state and re-scoring progress, and the steps
(put in service, take out of service, re-score again) behind a confirmation page that asks for a reason, for
moderators holding training.promote_trainingrun. The services (training.serving) check and audit each step."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from oasst.moderation_forms import confirm_then_apply, reason_form
from training import serving
from training.models import TrainingRun

SERVICE_STEPS = {
    "promote": (_("Put in service"), [("beats the model in service", _("Beats the model in service")),
                                      ("first model", _("First model"))], serving.reward_model_promote),
    "retire": (_("Take out of service"), [("worse than expected", _("Worse than expected")),
                                          ("replaced", _("Replaced"))], serving.reward_model_retire),
    "rescore": (_("Re-score the live replies"),
                [("resume after a worker stopped", _("Resume after a worker stopped"))], serving.reward_model_rescore),
}


class ServingAdminMixin:
    """For TrainingRunAdmin: the `service` field and the `<id>/service/<step>/` pages."""

    def has_promote_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and request.user.has_perm(serving.PROMOTE_PERMISSION)

    @admin.display(description=_("in service"), boolean=True)
    def in_service_mark(self, run: TrainingRun) -> bool:
        return run.in_service

    @admin.display(description=_("reward model in service"))
    def service(self, run: TrainingRun) -> str:
        """In service since when, with the re-scoring progress."""
        if run.kind != TrainingRun.Kind.REWARD_MODEL:
            return format_html("{}", "-")
        if not run.in_service:
            return format_html("{}", gettext("Not in service."))
        done, total = serving.rescore_progress(run)
        return format_html("{}", gettext("In service since %(since)s; live replies scored by this run: %(done)s of "
                                         "%(total)s.") % {"since": run.in_service_since.strftime("%Y-%m-%d %H:%M"),
                                                          "done": done, "total": total})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The buttons of the steps this moderator may take on this run (change_form.html shows them)."""
        run = TrainingRun.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        steps = []
        if run is not None and run.kind == TrainingRun.Kind.REWARD_MODEL and self.has_promote_permission(request):
            steps = [(reverse("admin:training_trainingrun_service", args=[run.pk, step]), SERVICE_STEPS[step][0])
                     for step in (("retire", "rescore") if run.in_service else ("promote",))]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "service_steps": steps})

    def get_urls(self):
        return [path("<int:run_id>/service/<str:step>/", self.admin_site.admin_view(self.service_view),
                     name="training_trainingrun_service"),
                *super().get_urls()]

    def service_view(self, request, run_id: int, step: str):
        """GET: the confirmation page; POST with a reason: the step, then back to the run's page with the
        outcome (a refusal says why and changes nothing)."""
        if not self.has_promote_permission(request):
            raise PermissionDenied
        if step not in SERVICE_STEPS:
            raise Http404("no such step")
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is None:
            raise Http404("no such run")
        title, choices, step_service = SERVICE_STEPS[step]
        back = reverse("admin:training_trainingrun_change", args=[run.pk])

        def apply(data: dict) -> None:
            try:
                step_service(run=run, actor=request.user, reason=data["full_reason"])
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.ERROR)
            else:
                self.message_user(request, gettext("%(step)s: %(run)s.") % {"step": title, "run": run},
                                  messages.SUCCESS)

        form = reason_form(request, choices, applied=request.method == "POST")
        response = confirm_then_apply(self, request, [run], form=form, title=title, action="", back=back, apply=apply)
        return response or HttpResponseRedirect(back)
