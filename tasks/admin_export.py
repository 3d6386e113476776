"""The tree list's downloads: the selected trees whole, as oasst JSON Lines (anonymised or with the real ids) or as a
Hugging Face dataset (a zip of the Parquet folder), each behind its permission."""

from __future__ import annotations

from django.contrib import admin
from django.http import FileResponse, StreamingHttpResponse
from django.utils.translation import gettext_lazy as _

from tasks.export import ExportFilters, can_export, can_export_real_ids, export_lines, release_seed
from tasks.export_hf import export_hf_zip


def _selected_trees(trees) -> ExportFilters:
    """The selected trees whole: deleted, spam and synthetic messages included."""
    return ExportFilters(states=(), tree_ids=tuple(trees.values_list("pk", flat=True)),
                         include_deleted=True, include_spam=True, include_synthetic=True)


def _export_response(trees, *, anonymize_seed: str | None) -> StreamingHttpResponse:
    """The selected trees whole, streamed."""
    filters = _selected_trees(trees)
    response = StreamingHttpResponse(export_lines(filters=filters, anonymize_seed=anonymize_seed),
                                     content_type="application/jsonl")
    response["Content-Disposition"] = 'attachment; filename="oasst-trees.jsonl"'
    return response


class TreeExportActions:
    """Mixed into the tree admin: researchers (the export permission) see the tree list and download what they pick."""

    def has_view_permission(self, request, obj=None) -> bool:
        """Researchers open the tree list to download the trees they pick."""
        return super().has_view_permission(request, obj) or can_export(request.user)

    def has_export_permission(self, request) -> bool:
        return can_export(request.user)

    def has_export_real_ids_permission(self, request) -> bool:
        return can_export_real_ids(request.user)

    @admin.action(description=_("Download as oasst JSON Lines (anonymised ids)"), permissions=["export"])
    def download_export(self, request, queryset):
        seed = release_seed()[0]  # never written: the download carries only the hashes
        return _export_response(queryset, anonymize_seed=seed)

    @admin.action(description=_("Download as oasst JSON Lines with the real ids"), permissions=["export_real_ids"])
    def download_export_real_ids(self, request, queryset):
        return _export_response(queryset, anonymize_seed=None)

    @admin.action(description=_("Download as a Hugging Face dataset (Parquet zip, anonymised ids)"),
                  permissions=["export"])
    def download_export_hf(self, request, queryset):
        seed = release_seed()[0]  # never written: the download carries only the hashes
        archive = export_hf_zip(filters=_selected_trees(queryset), anonymize_seed=seed)
        return FileResponse(archive, as_attachment=True, filename="oasst-hf.zip", content_type="application/zip")
