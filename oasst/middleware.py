"""Middleware of the project package."""

import logging
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import translation
from django.utils.functional import SimpleLazyObject, empty
from prometheus_client import CONTENT_TYPE_LATEST

from oasst.health import health_report
from oasst.languages import ui_languages
from oasst.logging import request_id_from_header, request_id_var
from oasst.metrics import METRICS_PATH, metrics_allowed, metrics_exposition, request_observe

REQUEST_ID_HEADER = "X-Request-ID"
access_logger = logging.getLogger("oasst.access")


class HealthCheckMiddleware:
    """Answers /healthz before host validation and HTTPS redirects, so load balancers and
    container health checks can probe the app by its internal address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path != "/healthz":
            return self.get_response(request)
        failures = health_report()
        if failures:
            body = "\n".join(f"{part}: {error}" for part, error in failures.items())
            return HttpResponse(f"FAIL\n{body}\n", status=503, content_type="text/plain")
        return HttpResponse("OK\n", content_type="text/plain")


class MetricsMiddleware:
    """Answers /metrics to a scraper that passes the guard (oasst.metrics.metrics_allowed), before host
    validation and HTTPS redirects as /healthz is, so Prometheus can scrape each container by its internal
    address; any other caller gets the site's 404 for an unknown path. Times and counts every other request
    by its view name: two clock reads and two metric updates, no query."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == METRICS_PATH and metrics_allowed(request):
            return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
        started = time.perf_counter()
        response = self.get_response(request)
        request_observe(request, response.status_code, time.perf_counter() - started)
        return response


class SqlCountHeaderMiddleware:
    """Adds X-SQL-Count (statements this request ran) to every response; on only when
    SQL_COUNT_HEADER is set, for benchmarks."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.db import connection

        count = 0

        def counter(execute, sql, params, many, context):
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counter):
            response = self.get_response(request)
        response["X-SQL-Count"] = str(count)
        return response


SECRET_URL_KWARGS = {"key", "token", "uidb36", "uidb64"}  # allauth's and Django's email and password-reset links
REDACTED_PATH = "<redacted>"


def _secret_spans(resolver: URLResolver, path: str, offset: int) -> list[tuple[int, int, str]] | None:
    """Where the URL pattern that `path` resolves to (below `resolver`) puts its secret kwargs: (start,
    end, name) offsets into the full path; None when no pattern matches. Walks the patterns as Django
    resolves them, each regex on what its parents left over."""
    for entry in resolver.url_patterns:
        if entry.pattern.match(path) is None:
            continue
        regex = entry.pattern.regex
        match = regex.search(path) if isinstance(entry, URLResolver) else regex.fullmatch(path) or regex.search(path)
        if match is None:
            return None
        spans = [(offset + match.start(name), offset + match.end(name), name) for name in regex.groupindex
                 if name in SECRET_URL_KWARGS and match.start(name) >= 0]
        if isinstance(entry, URLPattern):
            return spans
        inner = _secret_spans(entry, path[match.end():], offset + match.end())
        if inner is not None:
            return spans + inner
    return None


def _loggable_path(request: HttpRequest) -> str:
    """The path without its query string; every part of it that a URL pattern names as a secret (the
    key of an email confirmation, the uid and key of a password reset) is replaced by the name:
    `/accounts/password/reset/key/<uidb36>-<key>/`. A path that only resolves with a slash appended
    (the link cut short, redirected by APPEND_SLASH) is redacted the same way; a resolved URL with
    secrets that cannot be located is logged as REDACTED_PATH."""
    path, path_info = request.path, request.path_info
    match = getattr(request, "resolver_match", None)
    if match is not None and not SECRET_URL_KWARGS & set(match.kwargs):
        return path
    resolver = get_resolver(getattr(request, "urlconf", None))
    candidates = [path_info] if path_info.endswith("/") else [path_info, path_info + "/"]
    try:
        spans = next((spans for candidate in candidates if (spans := _secret_spans(
            resolver, candidate.removeprefix("/"), len(path) - len(path_info) + 1)) is not None), None)
    except (TypeError, ValueError, IndexError):  # a pattern this walk cannot follow: log nothing of the path
        return REDACTED_PATH
    if spans is None:
        return REDACTED_PATH if match is not None else path
    for start, end, name in sorted(spans, reverse=True):
        path = f"{path[:start]}<{name}>{path[min(end, len(path)):]}"
    return path


def _user_id(request: HttpRequest) -> int | None:
    """The id of the user the request was served for, read only if authentication already ran: the
    access log must not cost a session or token query of its own."""
    user = getattr(request, "user", None)
    if user is None or getattr(user, "_wrapped", None) is empty:
        return None
    return user.pk if user.is_authenticated else None


class RequestLogMiddleware:
    """Gives each request an id (a valid incoming X-Request-ID, else a new one) that every log record
    written while serving it carries, answers it in the X-Request-ID header, and writes one access
    log line: method, path without the query string, status, duration, user id, request id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from_header(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            response[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            user_id = _user_id(request)
            path = _loggable_path(request)
            access_logger.info(
                "%s %s %s %sms user=%s", request.method, path, status, duration_ms, user_id or "-",
                extra={"method": request.method, "path": path, "status": status,
                       "duration_ms": duration_ms, "user_id": user_id},
            )
            request_id_var.reset(token)


class UiLanguageMiddleware:
    """Picks the interface language after LocaleMiddleware (which read the language cookie, then
    Accept-Language): a logged-in user's `ui_language` wins over both; without it and without a cookie,
    their task language (`preferred_language`) when the interface has it.

    It costs no query: the choice is made when something first loads request.user (a login check, a
    service, the site context processor before any template renders), so a response that never needs
    the user (the favicon redirect) never loads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        lazy_user = request.user
        request.user = SimpleLazyObject(lambda: self._activate(request, lazy_user))
        before = translation.get_language()
        response = self.get_response(request)
        if translation.get_language() != before:
            # say which language the page is in, then leave the thread as LocaleMiddleware set it
            response.headers.setdefault("Content-Language", translation.get_language())
            translation.activate(before)
        return response

    @classmethod
    def _activate(cls, request: HttpRequest, lazy_user):
        user = getattr(lazy_user, "_wrapped", lazy_user)
        if user is empty:
            lazy_user._setup()
            user = lazy_user._wrapped
        language = cls.language_for(user, request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME))
        if language and language != getattr(request, "LANGUAGE_CODE", None):
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return user

    @classmethod
    def after_login(cls, sender, request, user, **kwargs) -> None:
        """user_logged_in: the rest of the login request (allauth's "Signed in as ..." message) speaks
        the language of the user who just signed in, not the anonymous visitor's."""
        language = cls.language_for(user, request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME))
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language

    @staticmethod
    def language_for(user, cookie: str | None) -> str | None:
        """The user's interface language, or None to keep LocaleMiddleware's choice."""
        if not user.is_authenticated:
            return None
        if user.ui_language in ui_languages():
            return user.ui_language
        if cookie in ui_languages():
            return None  # LocaleMiddleware already chose the cookie's language
        try:
            return translation.get_supported_language_variant(user.preferred_language)
        except LookupError:
            return None  # a task language the interface lacks: Accept-Language stays
