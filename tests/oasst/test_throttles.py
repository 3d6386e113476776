"""oasst.throttles: a view's user and address limits as sliding-window counters, one Redis round trip."""

import os
import threading

import pytest
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.test import RequestFactory
from rest_framework.throttling import ScopedRateThrottle

from oasst.throttles import WindowThrottle
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (set REDIS_URL)")


class View:
    throttle_scope = "test_user"
    throttle_ip_scope = "test_ip"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rates(monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"test_user": "3/min", "test_ip": "5/min"})


@pytest.fixture(params=["locmem", "redis"])
def backend(request, monkeypatch):
    """The cache the limits count in: local memory (the embedded default) or Redis (production)."""
    if request.param == "redis":
        if not os.environ.get("REDIS_URL"):
            pytest.skip("needs Redis (set REDIS_URL)")
        store = cache
    else:
        store = LocMemCache("throttle-test", {})
    store.clear()
    monkeypatch.setattr(WindowThrottle, "cache", store)
    yield store
    store.clear()


@pytest.fixture
def redis_cache():
    cache.clear()
    yield cache
    cache.clear()


def request_from(address: str, user=None):
    request = RequestFactory().post("/", REMOTE_ADDR=address)
    request.user = user
    return request


def attempt(clock: Clock, request) -> tuple[bool, float | None]:
    throttle = WindowThrottle()
    throttle.timer = clock
    allowed = throttle.allow_request(request, View)
    return allowed, throttle.wait()


def test_the_sliding_window_refuses_past_the_rate_and_lets_the_previous_window_fade(rates, backend):
    user = UserFactory()
    clock = Clock(600 * 1000.0 + 10)  # 10 s into a minute
    request = request_from("198.51.100.1", user)
    assert [attempt(clock, request)[0] for _ in range(3)] == [True, True, True]
    allowed, wait = attempt(clock, request)
    assert not allowed and wait == pytest.approx(50)  # this window holds 3: wait for the next one
    clock.now += 55  # 5 s into the next minute: 3 * 55/60 of the last window still counts (floor 2)
    allowed, wait = attempt(clock, request)
    assert allowed  # 2 + 0 + 1 <= 3
    allowed, wait = attempt(clock, request)
    assert not allowed  # 2 + 1 + 1 > 3; one more fits once 3 * share < 1, i.e. 40 s into the window
    assert wait == pytest.approx(35)
    clock.now += 35
    assert attempt(clock, request)[0]


def test_the_address_limit_is_shared_by_accounts_and_counts_what_the_user_limit_refused(rates, backend):
    clock = Clock(600 * 2000.0)
    alice, bob = UserFactory(), UserFactory()
    for _ in range(4):  # alice: 3 allowed, the 4th refused by her own limit, yet counted by the address's
        attempt(clock, request_from("198.51.100.2", alice))
    assert attempt(clock, request_from("198.51.100.2", bob))[0]  # the address's 5th
    assert not attempt(clock, request_from("198.51.100.2", bob))[0]  # the address's budget is spent
    assert attempt(clock, request_from("198.51.100.3", bob))[0]  # bob elsewhere: his own limit has room


def test_signed_out_clients_are_counted_by_address(rates, backend):
    from django.contrib.auth.models import AnonymousUser

    clock = Clock(600 * 3000.0)
    assert [attempt(clock, request_from("198.51.100.4", AnonymousUser()))[0] for _ in range(4)] == [
        True, True, True, False]


@needs_redis
def test_with_redis_both_limits_are_checked_and_counted_in_one_round_trip(rates, redis_cache, monkeypatch):
    import redis

    user = UserFactory()
    attempt(Clock(600 * 4000.0), request_from("198.51.100.5", user))  # loads the script
    sent = []
    original = redis.Redis.execute_command

    def counted(self, *args, **options):
        sent.append(args[0])
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counted)
    assert attempt(Clock(600 * 4000.0), request_from("198.51.100.5", user))[0]
    assert sent == ["EVALSHA"]
    counts = redis_cache.get_many([f"w40000:throttle_test_user_{user.pk}", "w40000:throttle_test_ip_198.51.100.5"])
    assert list(counts.values()) == [2, 2]


@needs_redis
def test_with_redis_parallel_requests_cannot_pass_the_limit_together(rates, redis_cache):
    """Twenty requests of one user at once: exactly the 3 the limit allows get through."""
    user = UserFactory()
    clock = Clock(600 * 5000.0)
    results, start = [], threading.Barrier(20)

    def one():
        start.wait()
        results.append(attempt(clock, request_from("198.51.100.10", user))[0])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 17 + [True] * 3


def test_redis_down_fails_open(rates, monkeypatch):
    """While the cache's script call fails, every request is allowed (the cache's degrading fallback)."""
    calls = []

    class DownCache(LocMemCache):
        def run_script(self, script, keys, args, *, fallback):
            calls.append(keys)
            return fallback

    monkeypatch.setattr(WindowThrottle, "cache", DownCache("down", {}))
    clock = Clock(600 * 6000.0)
    assert all(attempt(clock, request_from("198.51.100.6", UserFactory()))[0] for _ in range(10))
    assert len(calls) == 10
