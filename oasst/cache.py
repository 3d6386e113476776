"""The Redis cache, degrading: while Redis is down every read is a miss and every write is dropped.

The cache only speeds pages up and counts rate limits, so its outage must not fail a request.
Rate limits counted in it (DRF's throttles, allauth's) therefore fail open while Redis is down:
contributors keep working, the limits start counting again when Redis answers, and meanwhile
/healthz answers 503 naming the cache, so the outage is seen and fixed.
"""

import logging
import time

import redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)
WARN_EVERY_SECONDS = 60  # one warning a minute per process, not one per request


class DegradingRedisCache(RedisCache):
    _last_warning = 0.0

    def __init__(self, server, params):
        super().__init__(server, params)
        self._scripts: dict[str, str] = {}  # Lua script -> its SHA1 once loaded into Redis

    def _degraded(self, operation: str, error: Exception, fallback):
        now = time.monotonic()
        if now - DegradingRedisCache._last_warning >= WARN_EVERY_SECONDS:
            DegradingRedisCache._last_warning = now
            logger.warning("cache unavailable, %s treated as a miss: %s: %s", operation, type(error).__name__, error)
        return fallback

    def run_script(self, script: str, keys: list[str], args: list, *, fallback):
        """Runs a Lua script on Redis (EVALSHA; loaded once per process) in one round trip; `keys` are made
        with make_key. While Redis is down: `fallback`."""
        client = self._cache.get_client(keys[0] if keys else None, write=True)
        sha = self._scripts.get(script)
        try:
            if sha is not None:
                try:
                    return client.evalsha(sha, len(keys), *keys, *args)
                except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
                    pass
            self._scripts[script] = client.script_load(script)
            return client.evalsha(self._scripts[script], len(keys), *keys, *args)
        except redis.RedisError as error:
            return self._degraded("script", error, fallback)

    def ping(self) -> None:
        """Raises when Redis does not answer (for /healthz)."""
        self._cache.get_client(write=True).ping()

    def get(self, key, default=None, version=None):
        try:
            return super().get(key, default, version)
        except redis.RedisError as error:
            return self._degraded("get", error, default)

    def get_many(self, keys, version=None):
        try:
            return super().get_many(keys, version)
        except redis.RedisError as error:
            return self._degraded("get_many", error, {})

    def has_key(self, key, version=None):
        try:
            return super().has_key(key, version)
        except redis.RedisError as error:
            return self._degraded("has_key", error, False)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return super().add(key, value, timeout, version)
        except redis.RedisError as error:
            # The key reads as absent, so add "succeeds": allauth's rate-limit lock (cache.add) then opens
            # at once instead of waiting a second and refusing the request.
            return self._degraded("add", error, True)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            super().set(key, value, timeout, version)
        except redis.RedisError as error:
            self._degraded("set", error, None)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return super().set_many(data, timeout, version)
        except redis.RedisError as error:
            return self._degraded("set_many", error, list(data))  # the keys that were not stored

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return super().touch(key, timeout, version)
        except redis.RedisError as error:
            return self._degraded("touch", error, False)

    def incr(self, key, delta=1, version=None):
        try:
            return super().incr(key, delta, version)
        except redis.RedisError as error:
            self._degraded("incr", error, None)
            raise ValueError(f"Key '{key}' not found.") from error  # what incr raises on a miss

    def delete(self, key, version=None):
        try:
            return super().delete(key, version)
        except redis.RedisError as error:
            return self._degraded("delete", error, False)

    def delete_many(self, keys, version=None):
        try:
            super().delete_many(keys, version)
        except redis.RedisError as error:
            self._degraded("delete_many", error, None)

    def clear(self):
        try:
            return super().clear()
        except redis.RedisError as error:
            return self._degraded("clear", error, False)
