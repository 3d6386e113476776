"""Health of the parts the app needs: the database, and the cache and broker when configured. The site
still serves pages while the cache or broker is down (oasst/cache.py), but /healthz reports it."""

import logging

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

logger = logging.getLogger(__name__)


def database_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def cache_check() -> None:
    if hasattr(cache, "ping"):  # the Redis cache; local memory cannot fail
        cache.ping()


def broker_check() -> None:
    if not settings.REDIS_URL:
        return  # no broker configured: jobs run in-process
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


def health_report() -> dict[str, str]:
    """{part: error class} for each failing part; empty when healthy. Details go to the log only."""
    failures = {}
    for part, check in (("database", database_check), ("cache", cache_check), ("broker", broker_check)):
        try:
            check()
        except Exception as exc:  # any failure of a part means unhealthy
            logger.warning("health check failed: %s: %s", part, exc)
            failures[part] = type(exc).__name__
    return failures
