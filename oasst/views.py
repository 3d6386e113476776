"""Pages of the project package: the favicon redirect and error pages that answer JSON under /api/.
The contributor's profile area lives in tasks.profile_views (it reads messages and scores)."""

from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.views import defaults


def favicon(request):
    return HttpResponsePermanentRedirect(static("oasst/favicon.svg"))


def _wants_json(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception):
    if _wants_json(request):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _wants_json(request):
        return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
    return defaults.server_error(request)
