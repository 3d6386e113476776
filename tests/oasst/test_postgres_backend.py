"""oasst.postgresql: the persistent connection's health check sends nothing, and still sees a dead session."""

import time

import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper as DjangoWrapper

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fresh():
    """A connection of its own with health checks on, as the server's persistent connections have."""
    settings = {**connections["default"].settings_dict, "CONN_HEALTH_CHECKS": True, "CONN_MAX_AGE": 60}
    wrapper = connections["default"].__class__(settings)
    yield wrapper
    wrapper.close()


def backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_the_backend_is_ours():
    assert connection.settings_dict["ENGINE"] == "oasst.postgresql"
    assert isinstance(connections["default"], DjangoWrapper)


def test_a_healthy_connection_is_kept_without_a_round_trip(fresh, monkeypatch):
    pid = backend_pid(fresh)
    monkeypatch.setattr(DjangoWrapper, "is_usable", lambda self: pytest.fail("SELECT 1 sent"))
    fresh.health_check_done = False
    fresh.close_if_health_check_failed()
    assert fresh.connection is not None and backend_pid(fresh) == pid


def test_a_session_the_server_ended_is_replaced_before_the_next_query(fresh):
    pid = backend_pid(fresh)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    for _ in range(50):  # a request begins; the server's goodbye reaches the socket within milliseconds
        fresh.health_check_done = False
        fresh.close_if_health_check_failed()
        if fresh.connection is None:
            break
        time.sleep(0.02)
    assert fresh.connection is None, "the dead session was not noticed"
    assert backend_pid(fresh) != pid  # a new session, and the query succeeds
