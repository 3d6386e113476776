"""Training runs in the admin: read-only records with their metrics and plots, and a form that launches one."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from tasks.export import nightly_export
from training.admin_challenge import ChallengeAdminMixin
from training.admin_serving import ServingAdminMixin
from training.data import file_sha256
from training.dependencies import training_dependencies_problem
from training.dpo import DPOTrainingConfig
from training.models import TrainingRun
from training.policy import PolicyMissing, default_policy_path
from training.ppo_config import PPOConfig
from training.reward import RewardTrainingConfig
from training.reward_report import evaluation_lines, format_accuracy
from training.services import training_run_launch
from training.sft import SFTTrainingConfig

PLOTS = ("training_curve.png", "accuracy.png", "ppo_curves.png")
MODELS_FOLDER = "reward_models"  # under EXPORT_DIR; the nightly export only prunes its own files


EXPORT_SUFFIXES = (".jsonl", ".jsonl.gz")  # not their *.manifest.json, which no run can read


def export_files() -> list[Path]:
    folder = Path(settings.EXPORT_DIR)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.name.endswith(EXPORT_SUFFIXES) and path.is_file())


def no_export_message() -> str:
    return gettext("No export file yet in %(folder)s: press “Make an export now”, or run "
                   "“python manage.py export_trees %(folder)s/oasst-trees.jsonl.gz”.") % {"folder": settings.EXPORT_DIR}


class ExportFileForm(forms.Form):
    """A launch form whose data_file offers the export files; with none, its error says how to make one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["data_file"]
        field.choices = [(path.name, path.name) for path in export_files()]
        if not field.choices:
            field.error_messages["required"] = no_export_message()


class RewardModelLaunchForm(ExportFileForm):
    data_file = forms.ChoiceField(label=_("export file"))
    base_model = forms.CharField(required=False,
                                 help_text=_("local model folder; blank: the training worker's MiniLM backbone"))
    epochs = forms.FloatField(initial=RewardTrainingConfig.epochs)
    lr = forms.FloatField(initial=RewardTrainingConfig.lr, label=_("learning rate"))
    batch_size = forms.IntegerField(initial=RewardTrainingConfig.batch_size, min_value=1)

    def clean_epochs(self) -> float:
        if self.cleaned_data["epochs"] <= 0:
            raise forms.ValidationError(gettext("must be positive"))
        return self.cleaned_data["epochs"]

    def clean_lr(self) -> float:
        if self.cleaned_data["lr"] <= 0:
            raise forms.ValidationError(gettext("must be positive"))
        return self.cleaned_data["lr"]

    def clean_base_model(self) -> str | None:
        # blank: the training worker finds its MiniLM backbone (the web image has no model packages)
        return self.cleaned_data["base_model"] or None

    def config(self) -> RewardTrainingConfig:
        data = self.cleaned_data
        return RewardTrainingConfig(
            data=str(Path(settings.EXPORT_DIR) / data["data_file"]),
            output="",
            base_model=data["base_model"],
            epochs=data["epochs"],
            lr=data["lr"],
            batch_size=data["batch_size"],
        )


def reward_model_folders() -> list[tuple[str, str]]:
    """Output folders of succeeded reward-model runs that still hold a reward model, newest first."""
    runs = TrainingRun.objects.filter(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED)
    return [
        (run.output_dir, gettext("run %(id)s: %(folder)s") % {"id": run.pk, "folder": run.output_dir})
        for run in runs.only("pk", "output_dir")
        if (Path(run.output_dir) / "reward_model.json").is_file()
    ]


class CheckedLaunchForm(ExportFileForm):
    """A launch form over the export files whose config's own ``check()`` is its validation."""

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            self.config().check()
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        return data


class PPOLaunchForm(CheckedLaunchForm):
    data_file = forms.ChoiceField(label=_("prompts (export file)"))
    reward_model = forms.ChoiceField(label=_("reward model"), help_text=_("a succeeded reward-model run"))
    policy = forms.CharField(required=False, help_text=_("local causal LM folder; blank: the prepared SmolLM2"))
    steps = forms.IntegerField(initial=PPOConfig.steps, min_value=1)
    batch_size = forms.IntegerField(initial=PPOConfig.batch_size, min_value=1, help_text=_("episodes per step"))
    mini_batch_size = forms.IntegerField(initial=PPOConfig.mini_batch_size, min_value=1)
    lr = forms.FloatField(initial=PPOConfig.lr, label=_("learning rate"))
    kl_coef = forms.FloatField(initial=PPOConfig.kl_coef, label=_("initial KL coefficient"), min_value=0)
    max_new_tokens = forms.IntegerField(initial=PPOConfig.max_new_tokens, min_value=1)
    seed = forms.IntegerField(initial=PPOConfig.seed)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reward_model"].choices = reward_model_folders()

    def clean_policy(self) -> str:
        policy = self.cleaned_data["policy"]
        if policy:
            if not (Path(policy) / "config.json").is_file():
                raise forms.ValidationError(gettext("no model folder at %(folder)s") % {"folder": policy})
            return policy
        try:
            return str(default_policy_path())
        except PolicyMissing as error:
            raise forms.ValidationError(str(error)) from error

    def config(self) -> PPOConfig:
        data = self.cleaned_data
        return PPOConfig(
            reward_model=data["reward_model"],
            prompts=str(Path(settings.EXPORT_DIR) / data["data_file"]),
            output="",
            policy=data["policy"],
            **{name: data[name] for name in ("steps", "batch_size", "mini_batch_size", "lr", "kl_coef", "seed")},
            max_new_tokens=data["max_new_tokens"],
        )


class DPOLaunchForm(ExportFileForm):
    data_file = forms.ChoiceField(label=_("export file"))
    policy = forms.CharField(required=False, help_text=_("local causal LM folder; blank: the prepared SmolLM2"))
    epochs = forms.FloatField(initial=DPOTrainingConfig.epochs)
    lr = forms.FloatField(initial=DPOTrainingConfig.lr, label=_("learning rate"))
    beta = forms.FloatField(initial=DPOTrainingConfig.beta, help_text=_("strength of the pull to the reference"))
    batch_size = forms.IntegerField(initial=DPOTrainingConfig.batch_size, min_value=1)

    clean_policy = PPOLaunchForm.clean_policy

    def clean(self):
        data = super().clean()
        for name in ("epochs", "lr", "beta"):
            if name in data and data[name] <= 0:
                self.add_error(name, gettext("must be positive"))
        return data

    def config(self) -> DPOTrainingConfig:
        data = self.cleaned_data
        return DPOTrainingConfig(
            data=str(Path(settings.EXPORT_DIR) / data["data_file"]),
            output="",
            **{name: data[name] for name in ("policy", "epochs", "lr", "beta", "batch_size")},
        )


class SFTLaunchForm(CheckedLaunchForm):
    data_file = forms.ChoiceField(label=_("export file"))
    policy = forms.CharField(required=False, help_text=_("local causal LM folder; blank: the prepared SmolLM2"))
    all_paths = forms.BooleanField(
        required=False, help_text=_("every accepted reply, not only the best-ranked one at each assistant turn")
    )
    epochs = forms.FloatField(initial=SFTTrainingConfig.epochs)
    lr = forms.FloatField(initial=SFTTrainingConfig.lr, label=_("learning rate"))
    batch_size = forms.IntegerField(initial=SFTTrainingConfig.batch_size, min_value=1)
    lora_rank = forms.IntegerField(initial=SFTTrainingConfig.lora_rank, min_value=0,
                                   help_text=_("0: train all weights"))

    clean_policy = PPOLaunchForm.clean_policy

    def config(self) -> SFTTrainingConfig:
        data = self.cleaned_data
        return SFTTrainingConfig(
            data=str(Path(settings.EXPORT_DIR) / data["data_file"]),
            output="",
            **{name: data[name] for name in ("policy", "all_paths", "epochs", "lr", "batch_size", "lora_rank")},
        )


def run_change_url(run: TrainingRun) -> str:
    return reverse("admin:training_trainingrun_change", args=[run.pk])


LAUNCH_FORMS = {
    TrainingRun.Kind.REWARD_MODEL: RewardModelLaunchForm,
    TrainingRun.Kind.PPO: PPOLaunchForm,
    TrainingRun.Kind.DPO: DPOLaunchForm,
    TrainingRun.Kind.SFT: SFTLaunchForm,
}
PATHS = ("data", "output", "prompts")


@admin.register(TrainingRun)
class TrainingRunAdmin(ChallengeAdminMixin, ServingAdminMixin, admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "held_out_result", "in_service_mark", "data_file",
                    "launched_by", "created_at")
    list_filter = ("kind", "status", "in_service")
    search_fields = ("data_file", "output_dir", "data_sha256", "code_version")
    list_select_related = ("launched_by",)
    readonly_fields = (
        "kind",
        "status",
        "progress",
        "parameters",
        "data_file",
        "data_sha256",
        "output_dir",
        "came_from",
        "led_to",
        "code_version",
        "held_out_result",
        "service",
        "challenge",
        "plots",
        "metrics_summary",
        "evaluations",
        "log_tail",
        "error",
        "launched_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    exclude = ("metrics", "parents", "in_service", "in_service_since")

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser or request.user.has_perm("training.launch_run")

    def add_view(self, request, form_url="", extra_context=None):
        """Adding a run means launching one: ``?kind=`` reward_model (the default), ppo, dpo or sft."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        kind = request.GET.get("kind", TrainingRun.Kind.REWARD_MODEL)
        if kind not in LAUNCH_FORMS:
            raise Http404("no such kind of run")
        form = LAUNCH_FORMS[kind](request.POST or None)
        if request.method == "POST" and form.is_valid():
            config = form.config()
            data_file = config.prompts if kind == TrainingRun.Kind.PPO else config.data
            run = training_run_launch(
                kind=kind,
                data_file=data_file,
                data_sha256=file_sha256(data_file),
                parameters={key: value for key, value in asdict(config).items() if key not in PATHS},
                output_root=str(Path(settings.EXPORT_DIR) / MODELS_FOLDER),
                launched_by=request.user,
            )
            messages.success(request, gettext("%(run)s queued on the training queue") % {"run": run})
            return redirect("admin:training_trainingrun_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Launch a %(kind)s run") % {"kind": TrainingRun.Kind(kind).label},
            "form": form,
            "kind": kind,
            "kinds": [(value, TrainingRun.Kind(value).label) for value in LAUNCH_FORMS],
            "export_dir": settings.EXPORT_DIR,
            "no_export": "" if export_files() else no_export_message(),
            # Celery eager (`make run`): the run trains in this process, which may lack the training stack
            "cannot_train": training_dependencies_problem() if settings.CELERY_TASK_ALWAYS_EAGER else None,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/training/trainingrun/launch.html", context)

    def export_view(self, request):
        """Make an export file now (the nightly export's), then back to the launch form it was asked from."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        kind = request.POST.get("kind", TrainingRun.Kind.REWARD_MODEL)
        result = nightly_export(folder=settings.EXPORT_DIR, keep=settings.EXPORT_KEEP)
        if result.trees:
            messages.success(request, gettext("Exported %(trees)d trees to %(file)s.") % {
                "trees": result.trees, "file": Path(result.path).name})
        else:
            messages.warning(request, gettext("%(file)s holds no tree: no conversation tree is ready for export "
                                              "yet, and a run needs some.") % {"file": Path(result.path).name})
        launch = reverse("admin:training_trainingrun_add")
        return redirect(f"{launch}?kind={kind}" if kind in LAUNCH_FORMS else launch)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("held-out result"))
    def held_out_result(self, run: TrainingRun) -> str:
        """Pairwise accuracy of a reward model; mean reward before and after of a PPO policy; assistant-token loss
        before and after of an SFT policy."""
        reward = (run.metrics or {}).get("held_out_reward")
        if reward:
            return gettext("reward %(before).3f → %(after).3f") % reward
        loss = (run.metrics or {}).get("held_out_loss")
        if loss:
            return gettext("held-out loss %(before).3f → %(after).3f") % {"before": loss["before"]["loss"],
                                                                          "after": loss["after"]["loss"]}
        evaluation = (run.metrics or {}).get("eval") or {}
        if evaluation.get("accuracy") is None:
            return "-"
        rule = evaluation.get("length_rule")
        return format_accuracy(evaluation) + (gettext("; length rule %(accuracy).3f") % rule if rule else "")

    @admin.display(description=_("came from"))
    def came_from(self, run: TrainingRun) -> str:
        """The runs that wrote the folders this run started from, by role, linked to their pages."""
        links = run.parent_links.select_related("parent")
        return format_html_join(
            "", '<div>{}: <a href="{}">{}</a></div>',
            ((link.get_role_display(), run_change_url(link.parent), link.parent) for link in links),
        ) or format_html("{}", "-")

    @admin.display(description=_("led to"))
    def led_to(self, run: TrainingRun) -> str:
        """The runs that started from this run's folder, linked to their pages."""
        links = run.child_links.select_related("run").order_by("run__created_at", "run__pk")
        return format_html_join(
            "", '<div><a href="{}">{}</a>, {}</div>',
            ((run_change_url(link.run), link.run,
              gettext("started from this run as its %(role)s") % {"role": link.get_role_display()}) for link in links),
        ) or format_html("{}", "-")

    @admin.display(description=_("held-out metrics"))
    def metrics_summary(self, run: TrainingRun) -> str:
        evaluation = (run.metrics or {}).get("eval") or {}
        if "length_rule" in evaluation:
            rows = evaluation_lines(evaluation)
        else:  # a run recorded before intervals and baselines were computed
            slices = [(f"language {lang}", row) for lang, row in evaluation.get("by_language", {}).items()]
            slices += [(f"rank gap {gap}", row) for gap, row in evaluation.get("by_rank_gap", {}).items()]
            rows = [(name, format_accuracy(row)) for name, row in slices]
        cv = (run.metrics or {}).get("cv")
        if cv:
            rows += evaluation_lines(cv["pooled"], label=f"{cv['k']}-fold cross-validated accuracy")
        return format_html_join("", "<div>{}: {}</div>", ((name.strip(), value) for name, value in rows))

    @admin.display(description=_("evaluations (evaluate_reward_model)"))
    def evaluations(self, run: TrainingRun) -> str:
        """Every file this reward model was scored on, newest first: a read-only table."""
        evaluations = list(run.evaluations.all())
        if not evaluations:
            return format_html("{}", "-")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    Path(row.data_file).name,
                    row.data_sha256[:12],
                    row.pairs,
                    f"{row.accuracy:.3f} [{row.accuracy_low:.3f}, {row.accuracy_high:.3f}]",
                    f"{row.length_rule:.3f}",
                    f"0.5 [{row.random_low:.3f}, {row.random_high:.3f}]",
                    row.created_at.strftime("%Y-%m-%d %H:%M"),
                )
                for row in evaluations
            ),
        )
        accuracy = gettext("accuracy (%(level)s interval)") % {"level": "95%"}
        headers = (gettext("file"), "sha256", gettext("pairs"), accuracy, gettext("length rule"), gettext("random"),
                   gettext("date"))
        return format_html(
            '<table class="oasst-evaluations"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
            format_html_join("", "<th>{}</th>", ((header,) for header in headers)),
            rows,
        )

    @admin.display(description=_("plots"))
    def plots(self, run: TrainingRun) -> str:
        available = [name for name in PLOTS if (Path(run.output_dir) / name).is_file()]
        return format_html_join(
            "",
            '<img src="{}" alt="{}" class="oasst-plot">',
            ((reverse("admin:training_trainingrun_plot", args=[run.pk, name]), name) for name in available),
        ) or format_html("{}", "-")

    def get_urls(self):
        return [
            path(
                "<int:run_id>/plot/<str:name>",
                self.admin_site.admin_view(self.plot_view),
                name="training_trainingrun_plot",
            ),
            path("export/", self.admin_site.admin_view(require_POST(self.export_view)),
                 name="training_trainingrun_export"),
            *super().get_urls(),
        ]

    def plot_view(self, request, run_id: int, name: str):
        if name not in PLOTS or not self.has_view_permission(request):
            raise Http404("no such plot")
        run = get_object_or_404(TrainingRun, pk=run_id)
        plot = Path(run.output_dir) / name
        if not plot.is_file():
            raise Http404("plot not written")
        return FileResponse(plot.open("rb"), content_type="image/png")
