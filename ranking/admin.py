"""Admin views of ranking results: consensus and agreement per parent, "not rankable" counts."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from ranking.models import RankingResult


@admin.register(RankingResult)
class RankingResultAdmin(admin.ModelAdmin):
    list_display = ("parent_id", "rankings", "not_rankable", "agreement_shown", "computed_at")
    list_filter = ("computed_at",)
    ordering = ("-not_rankable", "-computed_at")
    fields = readonly_fields = ("parent", "consensus", "rankings", "not_rankable", "agreement_shown", "computed_at")
    search_fields = ("parent__text",)
    show_full_result_count = False

    @admin.display(description=_("agreement"), ordering="agreement")
    def agreement_shown(self, result: RankingResult) -> str:
        """Kendall's W to two places: 0.44, not 0.4444444444444444."""
        return "—" if result.agreement is None else f"{result.agreement:.2f}"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
