"""Admin views of ranking results: consensus and agreement per parent, "not rankable" counts."""

from django.contrib import admin

from ranking.models import RankingResult


@admin.register(RankingResult)
class RankingResultAdmin(admin.ModelAdmin):
    list_display = ("parent_id", "rankings", "not_rankable", "agreement", "computed_at")
    list_filter = ("computed_at",)
    ordering = ("-not_rankable", "-computed_at")
    readonly_fields = ("parent", "consensus", "rankings", "not_rankable", "agreement", "computed_at")
    search_fields = ("parent__text",)
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
