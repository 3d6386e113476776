"""The moderators' report pages in the admin, reached from the flagged queue (tasks.admin.FlaggedMessageAdmin adds
their URLs): the trollboard (admin:trollboard), the users whose messages drew the most red flags, downvotes and
bad labels in a time frame, its API twin being tasks.trollboard_api; and the moderation statistics
(admin:moderation_statistics). They read and write nothing."""

from functools import partial

from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext

from oasst.models import User
from ranking.models import Frame
from tasks import selectors

DEFAULT_FRAME = "week"


def trollboard_view(request, *, admin_site: AdminSite) -> TemplateResponse:
    if not request.user.has_perm("ranking.view_trollboard"):
        raise PermissionDenied
    frame = request.GET.get("frame", DEFAULT_FRAME)
    if frame not in Frame.values:
        frame = DEFAULT_FRAME
    entries = selectors.troll_counts(frame=frame)
    names = dict(User.objects.filter(pk__in=[e["user_id"] for e in entries]).values_list("pk", "username"))
    for entry in entries:
        entry["username"] = names.get(entry["user_id"], "")
    return TemplateResponse(request, "admin/tasks/trollboard.html", {
        **admin_site.each_context(request), "title": gettext("Trollboard"), "entries": entries, "frame": frame,
        "frames": Frame.values})


def statistics_view(request, *, admin_site: AdminSite) -> TemplateResponse:
    if not request.user.has_perm("tasks.view_message"):
        raise PermissionDenied
    return TemplateResponse(request, "admin/tasks/statistics.html", {
        **admin_site.each_context(request), "title": gettext("Statistics"), **selectors.moderation_statistics()})


def report_urls(admin_site: AdminSite) -> list[URLPattern]:
    """The report pages' URLs, behind the admin's login like the model admins' own."""
    return [path("trollboard/", admin_site.admin_view(partial(trollboard_view, admin_site=admin_site)),
                 name="trollboard"),
            path("statistics/", admin_site.admin_view(partial(statistics_view, admin_site=admin_site)),
                 name="moderation_statistics")]
