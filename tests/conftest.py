"""Fixtures shared by every test."""

import io
import os

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from oasst.translations import catalogues
from tests.factories import AdminFactory, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the browser tests' live server


@pytest.fixture(autouse=True, scope="session")
def _compiled_translations():
    """Pages render translated from the .mo files (build outputs): compile them once when one is
    missing or older than its .po."""
    def stale(po):
        mo = po.with_suffix(".mo")
        return not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime

    if any(stale(po) for po in catalogues()):
        call_command("compile_translations", verbosity=0, stdout=io.StringIO())


@pytest.fixture(autouse=True)
def _eager_jobs(settings):
    """Jobs run in-process in tests, also when REDIS_URL points at a real broker (CI); the tests
    marked `broker` start a real worker instead."""
    from oasst.celery import app

    app.conf.task_always_eager = True
    settings.CELERY_TASK_ALWAYS_EAGER = True
    yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()
    yield


def pytest_collection_modifyitems(config, items):
    on_postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))
    has_broker = bool(os.environ.get("REDIS_URL"))
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)"))
        if "broker" in item.keywords and not has_broker:
            item.add_marker(pytest.mark.skip(reason="needs a Celery broker (set REDIS_URL)"))


def pytest_report_header(config):
    url = os.environ.get("DATABASE_URL", "")
    database = "PostgreSQL" if url.startswith(("postgres", "pgsql")) else "SQLite"
    broker = "Redis" if os.environ.get("REDIS_URL") else "none (Celery eager)"
    return [f"oasst: database {database}, broker {broker}"]


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def admin_user(db):
    return AdminFactory()


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def user_api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def database_vendor(db):
    return connection.vendor


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "headless": True,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
    }


@pytest.fixture
def tree_settings(settings):
    """Override tree-manager settings for one test: tree_settings(goal_tree_size=3, ...)."""

    def apply(**overrides):
        settings.OASST = {**settings.OASST, **overrides}
        return settings.OASST

    return apply


@pytest.fixture
def small_trees(tree_settings):
    """The scripted-session settings: goal size 3, one review per message, one ranking per parent."""
    return tree_settings(goal_tree_size=3, num_reviews_reply=1, num_reviews_initial_prompt=1,
                         num_required_rankings=1)


def token_client(user) -> APIClient:
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def moderators_group(db):
    """The moderators group as its data migration makes it. Transactional tests flush every table,
    the migration's groups with them, so tests that need the group ask for this fixture."""
    from importlib import import_module

    from django.contrib.auth.models import Group, Permission

    migration = import_module("oasst.migrations.0003_moderators_group")
    group, _ = Group.objects.get_or_create(name="moderators")
    for (app_label, model), actions in migration.MODERATOR_PERMISSIONS.items():
        for action in actions:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                        content_type__model=model,
                                                        codename=migration.codename(action, model)))
    return group
