"""Strict parsing of settings from the environment.

A value that cannot be read is a startup error naming the variable, never a silent default.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class Env:
    """Typed reads of one environment mapping (os.environ by default, a dict in tests)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ

    def _raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def str(self, name: str, default: str = "") -> str:
        raw = self._raw(name)
        return default if raw is None else raw

    def bool(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        word = raw.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a boolean: use one of true/false, yes/no, on/off, 1/0."
        )

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
        if minimum is not None and value < minimum:
            raise ImproperlyConfigured(f"{name}={value} is below its minimum of {minimum}.")
        return value

    def float(self, name: str, default: float, *, minimum: float | None = None,
              maximum: float | None = None) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ImproperlyConfigured(f"{name}={value} is outside [{minimum}, {maximum}].")
        return value

    def list(self, name: str, default: list[str] | None = None) -> list[str]:
        raw = self._raw(name)
        if raw is None:
            return list(default or [])
        return [item.strip() for item in raw.split(",") if item.strip()]

    def networks(self, name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """A comma-separated list of addresses and networks (`10.0.0.0/8, ::1`); a bare address is a network of one."""
        networks = []
        for item in self.list(name):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network.") from None
        return networks

    def choice(self, name: str, default: str, choices: set[str]) -> str:
        value = self.str(name, default)
        if value not in choices:
            raise ImproperlyConfigured(
                f"{name}={value!r} is not one of: {', '.join(sorted(choices))}."
            )
        return value

    def crontab(self, name: str, default: str) -> crontab:
        """A crontab line, "minute hour day-of-month month day-of-week" (UTC), as Celery's schedule."""
        raw = self.str(name, default)
        fields = raw.split()
        if len(fields) != 5:
            raise ImproperlyConfigured(f"{name}={raw!r} is not a crontab line of 5 fields "
                                       "(minute hour day-of-month month day-of-week).")
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        try:
            return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                           day_of_week=day_of_week)
        except ValueError as error:
            raise ImproperlyConfigured(f"{name}={raw!r} is not a valid crontab line: {error}") from None

    def url(self, name: str, default: str | None = None, *, schemes: set[str]) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return default
        parts = urlsplit(raw)
        if parts.scheme not in schemes:
            raise ImproperlyConfigured(
                f"{name} must be a URL with scheme {' or '.join(sorted(schemes))}, got {parts.scheme or 'none'!r}."
            )
        if parts.scheme not in {"sqlite"} and not parts.hostname:
            raise ImproperlyConfigured(f"{name} has no host name.")
        try:
            parts.port  # noqa: B018 - raises ValueError for a non-numeric port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has an invalid port.") from None
        return raw


DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "sqlite"}
REDIS_SCHEMES = {"redis", "rediss"}


def database_config(env: Env, *, base_dir) -> dict:
    """DATABASES["default"]: DATABASE_URL, or a SQLite file in the project folder with WAL."""
    import dj_database_url

    url = env.url("DATABASE_URL", schemes=DATABASE_SCHEMES)
    sqlite_options = {
        # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue instead of failing.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if url is None:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(base_dir / "db.sqlite3"), "OPTIONS": sqlite_options}
    config = dj_database_url.parse(url, conn_max_age=env.int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
                                   conn_health_checks=True)
    if config["ENGINE"].endswith("postgresql"):
        config["ENGINE"] = "oasst.postgresql"  # Django's, with a health check that costs no round trip
        config.setdefault("OPTIONS", {})["connect_timeout"] = 5
    else:
        config["OPTIONS"] = {**sqlite_options, **config.get("OPTIONS", {})}
    return config


SOCIAL_PROVIDERS = ("github", "discord", "google")


def social_providers(env: Env) -> dict[str, dict]:
    """allauth providers whose credentials are set, e.g. GITHUB_CLIENT_ID + GITHUB_SECRET."""
    providers = {}
    for provider in SOCIAL_PROVIDERS:
        client_id = env.str(f"{provider.upper()}_CLIENT_ID")
        secret = env.str(f"{provider.upper()}_SECRET")
        if bool(client_id) != bool(secret):
            raise ImproperlyConfigured(
                f"{provider.upper()}_CLIENT_ID and {provider.upper()}_SECRET must be set together."
            )
        if client_id:
            providers[provider] = {"APPS": [{"client_id": client_id, "secret": secret, "key": ""}]}
    return providers
