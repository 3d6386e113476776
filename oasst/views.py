"""Pages of the project package: the favicon redirect, the interface language picker, and error pages
that answer JSON under /api/.
The contributor's profile area lives in tasks.profile_views (it reads messages and scores)."""

from django.core.exceptions import ValidationError
from django.http import HttpResponseBadRequest, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.utils.translation import gettext as _
from django.views import defaults, i18n
from django.views.decorators.http import require_POST

from oasst import services
from oasst.languages import ui_languages


def favicon(request):
    return HttpResponsePermanentRedirect(static("oasst/favicon.svg"))


def _wants_json(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception):
    if _wants_json(request):
        return JsonResponse({"detail": _("Not found."), "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _wants_json(request):
        return JsonResponse({"detail": _("Internal server error."), "code": "server_error"}, status=500)
    return defaults.server_error(request)


@require_POST
def set_language(request):
    """The interface language picker: Django's set_language (the cookie, then back to `next`), refusing
    an unknown code with a 400 instead of ignoring it; for a logged-in user also their `ui_language`."""
    language = request.POST.get("language", "")
    if language not in ui_languages():
        return HttpResponseBadRequest(_("Unknown interface language."), content_type="text/plain; charset=utf-8")
    if request.user.is_authenticated:
        try:
            services.ui_language_set(user=request.user, ui_language=language)
        except ValidationError as error:
            return HttpResponseBadRequest(" ".join(error.messages), content_type="text/plain; charset=utf-8")
    return i18n.set_language(request)
