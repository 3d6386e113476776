"""REST API v1 for researchers: exports in the oasst format, streamed as JSON Lines, or the Hugging Face
release folder as a zip."""

from django.http import FileResponse, StreamingHttpResponse
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.views import APIView

from oasst.languages import LANGUAGES
from tasks.api import ERRORS
from tasks.export import ExportFilters, can_export, export_lines
from tasks.export_hf import DEFAULT_SPLIT_SEED, DEFAULT_VALIDATION_FRACTION, HF_FORMAT, export_hf_zip
from tasks.models import TreeState


class ExportQuerySerializer(serializers.Serializer):
    # Not "format": DRF reserves that query parameter for choosing a renderer.
    records = serializers.ChoiceField(choices=["trees", "messages", HF_FORMAT], default="trees",
                                      help_text="One tree per line, one message per line, or `hf`: the Hugging "
                                                "Face release folder (Parquet, dataset card, manifest) as a zip.")
    state = serializers.MultipleChoiceField(choices=TreeState.values, required=False)
    lang = serializers.MultipleChoiceField(choices=sorted(LANGUAGES), required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    include_deleted = serializers.BooleanField(default=False)
    include_spam = serializers.BooleanField(default=False)
    include_synthetic = serializers.BooleanField(default=False)
    anonymize = serializers.CharField(required=False, max_length=200,
                                      help_text="A seed: ids are replaced by stable seeded hashes.")
    split_seed = serializers.IntegerField(default=DEFAULT_SPLIT_SEED,
                                          help_text="`hf` only: the seed of the train/validation split by tree.")
    validation_fraction = serializers.FloatField(default=DEFAULT_VALIDATION_FRACTION, min_value=0, max_value=0.999,
                                                 help_text="`hf` only: the share of the trees in validation, "
                                                           "at least 0 and below 1.")


class ExportView(APIView):
    @extend_schema(operation_id="exports_download", parameters=[ExportQuerySerializer],
                   responses={(200, "application/jsonl"): OpenApiTypes.STR,
                              (200, "application/zip"): OpenApiTypes.BINARY, **ERRORS},
                   description="Researchers: stream an export in the oasst format (JSON Lines), or with "
                               "`records=hf` download the Hugging Face release folder as a zip. "
                               "Defaults as `manage.py export_trees`: ready_for_export trees without deleted, "
                               "spam or synthetic messages.")
    def get(self, request):
        if not can_export(request.user):
            raise PermissionDenied(gettext("Exports are for researchers."))
        query = ExportQuerySerializer(data={**request.query_params.dict(),
                                            "state": request.query_params.getlist("state"),
                                            "lang": request.query_params.getlist("lang")})
        query.is_valid(raise_exception=True)
        data = query.validated_data
        filters = ExportFilters(
            states=tuple(sorted(data.get("state") or ["ready_for_export"])), langs=tuple(sorted(data.get("lang", []))),
            since=data.get("since"), until=data.get("until"), include_deleted=data["include_deleted"],
            include_spam=data["include_spam"], include_synthetic=data["include_synthetic"],
        )
        if data["records"] == HF_FORMAT:
            try:
                archive = export_hf_zip(filters=filters, anonymize_seed=data.get("anonymize"),
                                        split_seed=data["split_seed"],
                                        validation_fraction=data["validation_fraction"])
            except ValueError as error:  # nothing to release
                raise serializers.ValidationError({"records": [str(error)]}) from error
            return FileResponse(archive, as_attachment=True, filename="oasst-hf.zip", content_type="application/zip")
        response = StreamingHttpResponse(export_lines(filters=filters, fmt=data["records"],
                                                      anonymize_seed=data.get("anonymize")),
                                         content_type="application/jsonl; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="oasst-{data["records"]}.jsonl"'
        return response
