"""Structured logging: the request id of the request being served, stamped on every log record, and
the formatters (JSON lines for production, plain text for development).

What a log line may hold is decided here and in `oasst.middleware.RequestLogMiddleware`: ids,
methods, paths without their query string, status codes, durations. Never emails, names, IP
addresses, passwords, tokens or query strings (docs/security.md, "Logs").
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REQUEST_ID_MAX_LENGTH = 64
# Ids made by proxies and tracing systems (UUIDs, hex, base64url, "trace:span") fit; anything else is replaced.
REQUEST_ID_PATTERN = re.compile(rf"[A-Za-z0-9._:\-]{{1,{REQUEST_ID_MAX_LENGTH}}}")

# Attributes Django attaches to its records that would leak what the logs must not hold: the request
# object's repr carries the query string, and runserver's server_time is noise.
DROPPED_ATTRS = ("request", "server_time", "socket")


def request_id_from_header(value: str | None) -> str:
    """The client's or proxy's X-Request-ID when it is a short, plain token; otherwise a new one."""
    if value and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return uuid.uuid4().hex


def _record_request_id(record: logging.LogRecord) -> str | None:
    """The record's request id: its own, the one of the request it was logged for (Django logs a
    4xx/5xx answer after the middleware finished, with the request attached), else the current one."""
    return (getattr(record, "request_id", None) or getattr(getattr(record, "request", None), "request_id", None)
            or request_id_var.get())


class RequestIdFilter(logging.Filter):
    """Puts the request id (None outside a request) on every record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _record_request_id(record)
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id, and the record's extras."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger", "asctime": "time"})
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, *DROPPED_ATTRS])
        kwargs.setdefault("timestamp", False)
        super().__init__("{asctime}{levelname}{name}{message}{request_id}", *args, style="{", **kwargs)


class PlainFormatter(logging.Formatter):
    """Human-readable lines for development, with the request id when there is one."""

    def __init__(self, *args, **kwargs):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s", *args, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        request_id = _record_request_id(record) or "-"
        return self._fmt % {**record.__dict__, "request_id": request_id}
