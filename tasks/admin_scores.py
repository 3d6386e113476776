"""What the reward model sees, for moderators: the message admin's score-band filter and two report
pages reached from the message list and the admin index, the lowest-scored recent replies
(admin:lowest_scored_replies) and the replies where the model and the people's consensus disagree
(admin:score_disagreements), as candidates for review. They read and write nothing."""

from functools import partial

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy

from tasks import score_selectors

DAY_CHOICES = (1, 7, 30, 90)
DEFAULT_DAYS = 7
DEFAULT_DISAGREEMENT_DAYS = 30
TAU_CHOICES = (-1.0, -0.5, 0.0)


class ScoreBandFilter(admin.SimpleListFilter):
    """The reward score in fixed bands (tasks.score_selectors.SCORE_BANDS): unscored, low, middle, high."""

    title = gettext_lazy("reward score")
    parameter_name = "score"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in score_selectors.SCORE_BANDS.items()]

    def queryset(self, request, queryset):
        band = score_selectors.SCORE_BANDS.get(self.value())
        return queryset.filter(band[1]) if band else queryset


def _choice(request, name: str, choices: tuple, default):
    """A GET parameter among `choices`, or the default (a hand-made URL shows the default page)."""
    try:
        value = type(default)(request.GET.get(name, default))
    except ValueError:
        return default
    return value if value in choices else default


def choice_links(choices: tuple, current, link: str, **query) -> str:
    """The choices as links, the current one in bold: one value inside a sentence the translator sees whole."""
    parts = (format_html("<strong>{}</strong>", c) if c == current else format_html(link, c=c, **query)
             for c in choices)
    return format_html_join(" · ", "{}", ((part,) for part in parts))


def _check_can_view(request) -> None:
    if not request.user.has_perm("tasks.view_message"):
        raise PermissionDenied


def lowest_scored_view(request, *, admin_site: AdminSite) -> TemplateResponse:
    _check_can_view(request)
    days = _choice(request, "days", DAY_CHOICES, DEFAULT_DAYS)
    return TemplateResponse(request, "admin/tasks/lowest_scored.html", {
        **admin_site.each_context(request), "title": gettext("Lowest-scored recent replies"), "days": days,
        "day_links": choice_links(DAY_CHOICES, days, '<a href="?days={c}">{c}</a>'),
        "replies": score_selectors.lowest_scored_replies(days=days)})


def disagreements_view(request, *, admin_site: AdminSite) -> TemplateResponse:
    _check_can_view(request)
    days = _choice(request, "days", DAY_CHOICES, DEFAULT_DISAGREEMENT_DAYS)
    max_tau = _choice(request, "max_tau", TAU_CHOICES, 0.0)
    return TemplateResponse(request, "admin/tasks/score_disagreements.html", {
        **admin_site.each_context(request), "title": gettext("Model and people disagree"), "days": days,
        "max_tau": max_tau,
        "day_links": choice_links(DAY_CHOICES, days, '<a href="?days={c}&max_tau={t}">{c}</a>', t=max_tau),
        "tau_links": choice_links(TAU_CHOICES, max_tau, '<a href="?days={d}&max_tau={c}">{c}</a>', d=days),
        "entries": score_selectors.disagreements(days=days, max_tau=max_tau)})


def score_urls(admin_site: AdminSite) -> list[URLPattern]:
    """The report pages' URLs, behind the admin's login like the model admins' own."""
    return [path("lowest-scored/", admin_site.admin_view(partial(lowest_scored_view, admin_site=admin_site)),
                 name="lowest_scored_replies"),
            path("disagreements/", admin_site.admin_view(partial(disagreements_view, admin_site=admin_site)),
                 name="score_disagreements")]
