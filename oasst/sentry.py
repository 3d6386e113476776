"""Optional error reporting to Sentry (SENTRY_DSN), with personal data taken out before an event leaves.

sentry_sdk is told to collect no personal data (DATA_COLLECTION), no request body and no local variables;
`scrub_event` then removes what could still carry some: the user's email, name and address, cookies, the
Authorization and X-Api-Key headers and forwarded addresses, query strings, request bodies, the request URL
(a path may hold a password-reset key; the event's transaction names the route instead), the arguments of
log messages and Celery jobs, and breadcrumbs' data. Contributors' texts are personal data: they reach the
server only in request bodies, arguments and local variables, all of which are dropped.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration

# What the integrations may collect (sentry_sdk's data_collection, which supersedes send_default_pii): no user,
# cookies, bodies, query parameters, SQL parameters, job arguments or local variables; headers but the secret ones.
DATA_COLLECTION = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "denylist", "terms": [
        "authorization", "x-api-key", "cookie", "csrf", "forwarded", "-ip", "remote-", "via", "-user"]}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
}
KEPT_USER_FIELDS = {"id"}
DROPPED_HEADERS = {"authorization", "x-api-key", "cookie", "x-csrftoken", "x-forwarded-for", "x-real-ip", "forwarded"}
DROPPED_ENV = {"REMOTE_ADDR", "HTTP_X_FORWARDED_FOR"}
DROPPED_REQUEST_FIELDS = ("cookies", "data", "query_string", "url")


def _scrub_request(request: dict[str, Any]) -> None:
    for field in DROPPED_REQUEST_FIELDS:
        request.pop(field, None)
    headers = request.get("headers")
    if isinstance(headers, dict):
        request["headers"] = {name: value for name, value in headers.items() if name.lower() not in DROPPED_HEADERS}
    env = request.get("env")
    if isinstance(env, dict):
        request["env"] = {name: value for name, value in env.items() if name not in DROPPED_ENV}


def _drop_frame_variables(event: dict[str, Any]) -> None:
    exceptions = (event.get("exception") or {}).get("values") or []
    threads = (event.get("threads") or {}).get("values") or []
    for holder in [*exceptions, *threads]:
        for frame in (holder.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event without personal data or secrets (sentry_sdk's before_send and before_send_transaction)."""
    if isinstance(event.get("user"), dict):
        event["user"] = {key: value for key, value in event["user"].items() if key in KEPT_USER_FIELDS}
    if isinstance(event.get("request"), dict):
        _scrub_request(event["request"])
    _drop_frame_variables(event)
    logentry = event.get("logentry")
    if isinstance(logentry, dict):  # keep the template, not the values put into it
        logentry.pop("params", None)
        logentry.pop("formatted", None)
    celery_job = (event.get("extra") or {}).get("celery-job")
    if isinstance(celery_job, dict):
        celery_job.pop("args", None)
        celery_job.pop("kwargs", None)
    for breadcrumb in (event.get("breadcrumbs") or {}).get("values") or []:
        breadcrumb.pop("data", None)
    return event


def sentry_init(*, dsn: str, environment: str, release: str | None, traces_sample_rate: float,
                transport: Any = None) -> None:
    """Start reporting errors of this process (web and Celery alike) to Sentry. `transport` is for tests."""
    options = {"transport": transport} if transport is not None else {}
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        traces_sample_rate=traces_sample_rate,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        data_collection=DATA_COLLECTION,
        max_request_body_size="never",
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        **options,
    )
