"""Middleware of the project package."""

from django.http import HttpRequest, HttpResponse

from oasst.health import health_report


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
