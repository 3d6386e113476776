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
