"""Training runs in the admin: read-only records with their metrics and plots."""

from __future__ import annotations

from pathlib import Path

from django.contrib import admin
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from training.models import TrainingRun

PLOTS = ("training_curve.png", "accuracy.png")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "held_out_accuracy", "data_file", "launched_by", "created_at")
    list_filter = ("kind", "status")
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
        "code_version",
        "held_out_accuracy",
        "plots",
        "metrics_summary",
        "log_tail",
        "error",
        "launched_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    exclude = ("metrics",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="held-out accuracy")
    def held_out_accuracy(self, run: TrainingRun) -> str:
        evaluation = (run.metrics or {}).get("eval") or {}
        if evaluation.get("accuracy") is None:
            return "-"
        return f"{evaluation['accuracy']:.3f} ({evaluation['pairs']} pairs)"

    @admin.display(description="held-out metrics")
    def metrics_summary(self, run: TrainingRun) -> str:
        evaluation = (run.metrics or {}).get("eval") or {}
        rows = [(f"language {lang}", row) for lang, row in evaluation.get("by_language", {}).items()]
        rows += [(f"rank gap {gap}", row) for gap, row in evaluation.get("by_rank_gap", {}).items()]
        return format_html_join(
            "",
            "<div>{}: {} ({} pairs)</div>",
            ((name, f"{row['accuracy']:.3f}", row["pairs"]) for name, row in rows if row.get("accuracy") is not None),
        )

    @admin.display(description="plots")
    def plots(self, run: TrainingRun) -> str:
        available = [name for name in PLOTS if (Path(run.output_dir) / name).is_file()]
        return format_html_join(
            "",
            '<img src="{}" alt="{}" style="max-width: 640px; display: block; margin-bottom: 8px">',
            ((reverse("admin:training_trainingrun_plot", args=[run.pk, name]), name) for name in available),
        ) or format_html("{}", "-")

    def get_urls(self):
        return [
            path(
                "<int:run_id>/plot/<str:name>",
                self.admin_site.admin_view(self.plot_view),
                name="training_trainingrun_plot",
            ),
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
