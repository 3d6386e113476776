"""Rate limits counted in the cache: a view's per-user scope and per-address scope in one round trip.

Each scope is a sliding-window counter: a count per fixed window (the rate's period), and a request is
allowed while `previous window's count * the share of it still inside the sliding window + this window's
count` stays below the rate; each limit counts the requests it allowed, as DRF's throttles do. It holds
two integers per scope and client instead of DRF's list of request times (thousands of them for a busy
address), and with Redis both scopes of a view are checked and counted by one Lua script: one round trip,
atomic, so parallel requests cannot slip past a limit together. Any other cache (the embedded default's
local memory) is counted with get/add/incr, which one process serialises well enough for a
single-process server.

While Redis is down the limits fail open, as the cache does (oasst/cache.py).
"""

import math
import time

from django.core.cache import cache as default_cache
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

# KEYS: (current window, previous window) per scope; ARGV: (limit, weight of the previous window, ttl) per scope.
# Each scope that allows the request counts it (as DRF's throttles do, one by one: an attempt refused by the
# user's limit still spends the address's budget). Returns 0 when every scope allowed it, else the 1-based
# index of the first refusing scope.
SLIDING_WINDOW_SCRIPT = """
local refused = 0
for i = 1, #KEYS / 2 do
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if math.floor(previous * tonumber(ARGV[3 * i - 1])) + current + 1 > tonumber(ARGV[3 * i - 2]) then
    if refused == 0 then refused = i end
  else
    redis.call('INCR', KEYS[2 * i - 1])
    redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[3 * i])
  end
end
return refused
"""


PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # DRF's rate strings: "120/min", "10/s", "1000/day"


class Scope:
    """One limit for one client: `limit` requests per `period` seconds, counted under `ident`."""

    def __init__(self, name: str, rate: str, ident: str, now: float):
        self.name = name
        count, period = rate.split("/")
        self.limit, self.period = int(count), PERIODS[period[0]]
        window = int(now // self.period)
        self.elapsed = now - window * self.period  # seconds into the current window
        self.previous_weight = 1 - self.elapsed / self.period
        self.keys = (f"w{window}:throttle_{name}_{ident}", f"w{window - 1}:throttle_{name}_{ident}")

    def wait(self, current: int, previous: int) -> float:
        """Seconds until one more request fits."""
        if current + 1 > self.limit or not previous:
            return self.period - self.elapsed
        # previous * (1 - (elapsed + wait) / period) + current + 1 <= limit
        needed_weight = (self.limit - current - 1) / previous
        return max(0.0, (1 - needed_weight) * self.period - self.elapsed)


class WindowThrottle(BaseThrottle):
    """The view's `throttle_scope` (per signed-in user, else per address) and optional `throttle_ip_scope`
    (per address whoever is signed in: accounts made in bulk behind one address share one budget). Rates
    come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], read through ScopedRateThrottle.THROTTLE_RATES."""

    cache = default_cache
    timer = time.time

    def scopes(self, request, view, now: float) -> list[Scope]:
        rates = ScopedRateThrottle.THROTTLE_RATES
        address = self.get_ident(request)
        user = getattr(request, "user", None)
        scopes = []
        if name := getattr(view, "throttle_scope", None):
            ident = user.pk if user is not None and user.is_authenticated else address
            scopes.append(Scope(name, rates[name], ident, now))
        if name := getattr(view, "throttle_ip_scope", None):
            scopes.append(Scope(name, rates[name], address, now))
        return scopes

    def allow_request(self, request, view) -> bool:
        self.refused_wait = None
        scopes = self.scopes(request, view, self.timer())
        if not scopes:
            return True
        counter = getattr(self.cache, "run_script", None)
        refused = self._count_in_redis(scopes, counter) if counter else self._count_in_cache(scopes)
        if refused is None:
            return True
        scope, current, previous = refused
        self.refused_wait = scope.wait(current, previous)
        return False

    def _count_in_redis(self, scopes: list[Scope], run_script):
        keys = [self.cache.make_key(key) for scope in scopes for key in scope.keys]
        args = [value for scope in scopes
                for value in (scope.limit, f"{scope.previous_weight:.6f}", 2 * scope.period)]
        refused = run_script(SLIDING_WINDOW_SCRIPT, keys, args, fallback=0)
        if not refused:
            return None
        scope = scopes[refused - 1]
        counts = self.cache.get_many(scope.keys)
        return scope, counts.get(scope.keys[0], scope.limit), counts.get(scope.keys[1], 0)

    def _count_in_cache(self, scopes: list[Scope]):
        counts = self.cache.get_many([key for scope in scopes for key in scope.keys])
        refused = None
        for scope in scopes:
            current, previous = (int(counts.get(key, 0)) for key in scope.keys)
            if math.floor(previous * scope.previous_weight) + current + 1 > scope.limit:
                refused = refused or (scope, current, previous)
            elif not self.cache.add(scope.keys[0], 1, 2 * scope.period):
                try:
                    self.cache.incr(scope.keys[0])
                except ValueError:  # expired between add and incr
                    self.cache.add(scope.keys[0], 1, 2 * scope.period)
        return refused

    def wait(self) -> float | None:
        return self.refused_wait


def check_throttled(request, scope: str) -> float | None:
    """For pages outside DRF: None when `scope` (and `<scope>_ip`) allow the request, else the seconds to
    wait. Counts in the same counters as the API's views of that scope."""
    view = type("ThrottledPage", (), {"throttle_scope": scope, "throttle_ip_scope": f"{scope}_ip"})
    throttle = WindowThrottle()
    return None if throttle.allow_request(request, view) else throttle.wait()

