"""Structured logging: the request id of the request being served, stamped on every log record, and
the formatters (JSON lines for production, plain text for development).

What a log line may hold is decided here and in `oasst.middleware.RequestLogMiddleware`: ids,
methods, paths without their query string, status codes, durations. Never emails, names, IP
addresses, passwords, tokens or query strings (docs/security.md, "Logs"). Both formatters escape
control characters in every field, so no value (a path, a header, an exception message) can break a
record over lines or forge one.
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

# C0 and C1 controls, DEL, the Unicode line and paragraph separators and the bidirectional overrides
# (which reorder what a reader sees), and the backslash, so an escape in the log is never ambiguous.
UNSAFE_CHARACTERS = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Tracebacks keep their line breaks in the plain format; each continuation line starts with this.
CONTINUATION_PREFIX = "  | "


def _escape_character(match: re.Match) -> str:
    character = match.group()
    if character in NAMED_ESCAPES:
        return NAMED_ESCAPES[character]
    return f"\\x{ord(character):02x}" if ord(character) < 0x100 else f"\\u{ord(character):04x}"


def escape_log_text(text: str) -> str:
    """The text with every control character written as a visible escape (`\\n`, `\\x1b`, `\\u2028`)."""
    return UNSAFE_CHARACTERS.sub(_escape_character, text)


def escape_log_value(value):
    """A logged value with its strings escaped, inside dicts and lists too; other values unchanged."""
    if isinstance(value, str):
        return escape_log_text(value)
    if isinstance(value, dict):
        return {escape_log_value(key): escape_log_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_log_value(item) for item in value]
    return value


def _escape_multiline(text: str) -> str:
    """A traceback or stack: every line escaped, the line breaks kept."""
    return "\n".join(escape_log_text(line) for line in text.split("\n"))


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

    def process_log_record(self, log_data: dict) -> dict:
        multiline = {key: log_data.pop(key) for key in ("exc_info", "stack_info") if isinstance(log_data.get(key), str)}
        log_data = escape_log_value(log_data)
        log_data.update({key: _escape_multiline(text) for key, text in multiline.items()})
        return log_data


class PlainFormatter(logging.Formatter):
    """Human-readable lines for development, with the request id when there is one: one line a record,
    followed by its traceback, if any, on lines marked with CONTINUATION_PREFIX."""

    def __init__(self, *args, **kwargs):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s", *args, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        request_id = _record_request_id(record) or "-"
        fields = {**record.__dict__, "request_id": request_id}
        return self._fmt % {key: escape_log_text(value) if isinstance(value, str) else value
                            for key, value in fields.items()}

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        blocks = [self.formatException(record.exc_info) if record.exc_info else record.exc_text,
                  self.formatStack(record.stack_info) if record.stack_info else None]
        continuation = [f"{CONTINUATION_PREFIX}{escape_log_text(text)}" for block in blocks if block
                        for text in block.splitlines()]
        return "\n".join([line, *continuation])
