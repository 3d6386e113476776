"""The Prometheus metrics of /metrics: what each request costs (counted as it is served), what the
database and the broker hold (computed at each scrape), and the guard in front of the endpoint.

Request metrics are prometheus_client counters and histograms. Under gunicorn with several workers each
worker counts in its own files under PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode,
chosen by that variable being set when prometheus_client is imported) and a scrape merges them all;
without the variable (runserver, tests) they live in the process's default registry.

The figures read from the database are computed at scrape time by the functions named in
settings.METRICS_COLLECTORS (each app reports its own tables: tasks/metrics.py, training/metrics.py),
so every process and every container answers the same, whichever one is scraped.
"""

import hmac
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from datetime import timedelta

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils import timezone
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
UNRESOLVED_VIEW = "<unresolved>"  # every path no URL pattern matched: one label, whatever the path
ACTIVE_CONTRIBUTOR_WINDOW = timedelta(minutes=15)

REQUESTS = Counter("oasst_http_requests", "Requests served, by view name, method and status class.",
                   ["view", "method", "status"])
LATENCY = Histogram("oasst_http_request_duration_seconds", "Time to serve a request, by view name and method.",
                    ["view", "method"])
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # any other method is counted as "other"


def request_observe(request: HttpRequest, status: int, seconds: float) -> None:
    """Count one served request under its view's name (never its path: label values stay bounded)."""
    match = getattr(request, "resolver_match", None)
    view = match.view_name if match is not None else UNRESOLVED_VIEW
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(view, method, f"{status // 100}xx").inc()
    LATENCY.labels(view, method).observe(seconds)


# --- The guard ------------------------------------------------------------------------------------------


def metrics_allowed(request: HttpRequest) -> bool:
    """Whether this request may read /metrics: every guard that is configured must pass, the bearer token
    (OASST_METRICS_TOKEN, compared in constant time) and the client's address (OASST_METRICS_ALLOW_IPS, read
    as the rate limits read it: REMOTE_ADDR, or X-Forwarded-For behind OASST_TRUSTED_PROXY_COUNT proxies).
    Neither configured: nobody may."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOW_IPS
    if not token and not networks:
        return False
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return False
    if networks:
        try:
            address = ipaddress.ip_address(BaseThrottle().get_ident(request) or "")
        except ValueError:
            return False
        if not any(address in network for network in networks):
            return False
    return True


# --- Scrape-time figures ----------------------------------------------------------------------------------


def contributors_active() -> Iterable[Metric]:
    since = timezone.now() - ACTIVE_CONTRIBUTOR_WINDOW
    count = get_user_model().objects.filter(last_activity_at__gte=since).count()
    yield GaugeMetricFamily("oasst_contributors_active", "Contributors whose last contribution is at most "
                            "15 minutes old.", value=count)


def celery_queue_lengths() -> Iterable[Metric]:
    """LLEN of each Celery queue in the Redis broker, in one round trip; nothing without a broker (jobs run
    eagerly) or while Redis does not answer (oasst_celery_broker_up says which)."""
    if not settings.REDIS_URL:
        return
    queues = sorted({settings.CELERY_TASK_DEFAULT_QUEUE} | {route["queue"] for route in
                                                             settings.CELERY_TASK_ROUTES.values()})
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        pipeline = client.pipeline(transaction=False)
        for queue in queues:
            pipeline.llen(queue)
        lengths = pipeline.execute()
    except redis.RedisError as error:
        logger.warning("metrics: broker unreachable: %s", type(error).__name__)
        yield GaugeMetricFamily("oasst_celery_broker_up", "1 when the broker answered this scrape.", value=0)
        return
    finally:
        client.close()
    yield GaugeMetricFamily("oasst_celery_broker_up", "1 when the broker answered this scrape.", value=1)
    family = GaugeMetricFamily("oasst_celery_queue_length", "Jobs waiting in each Celery queue.", labels=["queue"])
    for queue, length in zip(queues, lengths, strict=True):
        family.add_metric([queue], length)
    yield family


class ScrapeCollector:
    """Runs the scrape-time functions: this module's and those named in settings.METRICS_COLLECTORS."""

    def __init__(self, functions: list[Callable[[], Iterable[Metric]]]):
        self.functions = functions

    def collect(self) -> Iterable[Metric]:
        for function in self.functions:
            yield from function()


def metrics_exposition() -> bytes:
    """Every metric in Prometheus' text format: the request metrics of all worker processes (multiprocess
    mode) or of this one, then the figures computed now."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    functions = [contributors_active, celery_queue_lengths, *map(import_string, settings.METRICS_COLLECTORS)]
    registry.register(ScrapeCollector(functions))
    return generate_latest(registry)
