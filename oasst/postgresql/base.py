"""Django's PostgreSQL backend, with a health check that sends nothing to the server.

With CONN_HEALTH_CHECKS Django checks a persistent connection before each request's first query by
running `SELECT 1`: one round trip per request, a tenth of a task loop's statements. An idle connection
has nothing to read, and a server that restarts or ends the session (pg_terminate_backend, a crash,
a restart) sends an error and closes the socket, which makes it readable; so the check here is a
zero-timeout poll of the socket: readable, closed or broken means unusable, and Django opens a new
connection. What the poll cannot see (a silently lost network path) the query then meets with the
connect_timeout and an OperationalError, as the SELECT 1 would have.
"""

import select

from django.db.backends.postgresql import base


def idle_connection_is_alive(connection) -> bool:
    """True when the psycopg connection is open and the server has sent nothing since the last reply."""
    if connection.closed or connection.broken:
        return False
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return not poller.poll(0)


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if self.pool or self.connection is None or not self.health_check_enabled or self.health_check_done:
            return
        if not idle_connection_is_alive(self.connection):
            self.close()
        self.health_check_done = True
