"""Settings are read strictly from the environment: a bad value stops startup and names the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from oasst.env import Env, database_config, social_providers

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("raw, expected", [("true", True), ("FALSE", False), ("1", True), ("0", False),
                                            ("yes", True), ("off", False), (" On ", True)])
def test_boolean_words_are_parsed(raw, expected):
    assert Env({"DEBUG": raw}).bool("DEBUG", not expected) is expected


def test_missing_or_empty_boolean_takes_the_default():
    assert Env({}).bool("DEBUG", True) is True
    assert Env({"DEBUG": ""}).bool("DEBUG", False) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "nope"])
def test_bad_boolean_is_an_error_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        Env({"DEBUG": raw}).bool("DEBUG", True)


def test_bad_integer_and_out_of_range_integer_are_errors():
    with pytest.raises(ImproperlyConfigured, match="EMAIL_PORT"):
        Env({"EMAIL_PORT": "twenty"}).int("EMAIL_PORT", 25)
    with pytest.raises(ImproperlyConfigured, match="EMAIL_PORT"):
        Env({"EMAIL_PORT": "0"}).int("EMAIL_PORT", 25, minimum=1)
    assert Env({"EMAIL_PORT": "2525"}).int("EMAIL_PORT", 25, minimum=1) == 2525


def test_float_range_is_checked():
    with pytest.raises(ImproperlyConfigured, match="THRESHOLD"):
        Env({"THRESHOLD": "1.5"}).float("THRESHOLD", 0.6, minimum=0, maximum=1)
    with pytest.raises(ImproperlyConfigured, match="THRESHOLD"):
        Env({"THRESHOLD": "high"}).float("THRESHOLD", 0.6)
    assert Env({"THRESHOLD": "0.7"}).float("THRESHOLD", 0.6, minimum=0, maximum=1) == 0.7


def test_lists_are_comma_separated_and_trimmed():
    assert Env({"ALLOWED_HOSTS": " a.org, b.org ,,"}).list("ALLOWED_HOSTS") == ["a.org", "b.org"]
    assert Env({}).list("ALLOWED_HOSTS", ["x"]) == ["x"]


def test_choice_outside_the_set_is_an_error():
    with pytest.raises(ImproperlyConfigured, match="ACCOUNT_EMAIL_VERIFICATION"):
        Env({"ACCOUNT_EMAIL_VERIFICATION": "sometimes"}).choice(
            "ACCOUNT_EMAIL_VERIFICATION", "mandatory", {"mandatory", "none"})


@pytest.mark.parametrize("raw", ["mysql://db/x", "postgres:///nohost", "postgres://db:port/x", "just-text"])
def test_bad_database_url_is_an_error_that_does_not_echo_the_url(raw):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL") as error:
        Env({"DATABASE_URL": raw}).url("DATABASE_URL", schemes={"postgres", "sqlite"})
    assert raw not in str(error.value)


def test_default_database_is_sqlite_in_wal_mode(tmp_path):
    config = database_config(Env({}), base_dir=tmp_path)
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "db.sqlite3")
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]


def test_sqlite_database_url_gets_the_same_wal_options(tmp_path):
    config = database_config(Env({"DATABASE_URL": f"sqlite:///{tmp_path}/other.sqlite3"}), base_dir=tmp_path)
    assert config["NAME"].endswith("other.sqlite3")
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]


def test_postgres_database_url_is_parsed(tmp_path):
    config = database_config(Env({"DATABASE_URL": "postgres://oasst:secret@db.internal:5433/oasst"}),
                             base_dir=tmp_path)
    assert config["ENGINE"] == "oasst.postgresql"  # Django's backend with a health check without a round trip
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == ("db.internal", 5433, "oasst", "oasst")
    assert config["CONN_HEALTH_CHECKS"] is True


def test_social_providers_are_enabled_only_with_credentials():
    assert social_providers(Env({})) == {}
    providers = social_providers(Env({"GITHUB_CLIENT_ID": "id", "GITHUB_SECRET": "s"}))
    assert list(providers) == ["github"]
    assert providers["github"]["APPS"][0]["client_id"] == "id"


def test_half_configured_social_provider_is_an_error():
    with pytest.raises(ImproperlyConfigured, match="DISCORD_CLIENT_ID"):
        social_providers(Env({"DISCORD_CLIENT_ID": "id"}))


def run_django(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Start Django in a fresh process with exactly these settings variables."""
    clean = {key: value for key, value in os.environ.items()
             if key in {"PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_startup_fails_on_a_bad_boolean_and_names_it():
    result = run_django({"DEBUG": "maybe"}, "check")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_startup_without_secret_key_fails_when_debug_is_off():
    result = run_django({"DEBUG": "false", "ALLOWED_HOSTS": "example.org"}, "check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_deploy_check_is_clean_with_production_settings():
    result = run_django({"DEBUG": "false", "SECRET_KEY": "k" * 20 + "X7#q-9!zLmP2$wR5vB8&nC4@hJ6^tY1*eD3",
                         "ALLOWED_HOSTS": "example.org"}, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_credentials_in_the_environment_enable_the_social_provider():
    result = run_django({"GOOGLE_CLIENT_ID": "gid", "GOOGLE_SECRET": "gs"}, "shell", "-c",
                        "from django.conf import settings; print(settings.INSTALLED_APPS)")
    assert result.returncode == 0, result.stderr
    assert "allauth.socialaccount.providers.google" in result.stdout
    assert "providers.github" not in result.stdout
