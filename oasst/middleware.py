"""Middleware of the project package."""

import logging
import time

from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

from oasst.health import health_report
from oasst.logging import request_id_from_header, request_id_var

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


def _loggable_path(request: HttpRequest) -> str:
    """The path without its query string; a path that carries a one-time key (email confirmation,
    password reset) has the key replaced by its name: `/accounts/confirm-email/<key>/`."""
    path = request.path
    match = getattr(request, "resolver_match", None)
    for name, value in (match.kwargs.items() if match is not None else ()):
        if name in SECRET_URL_KWARGS and value:
            path = path.replace(str(value), f"<{name}>")
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
