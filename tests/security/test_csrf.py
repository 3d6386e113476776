"""CSRF: every page URL (web pages, accounts, profile, admin), enumerated from the URL resolver so that
a new view is covered the day it is added, refuses a logged-in user's POST without a CSRF token with
403 and changes nothing; the session-authenticated API does the same. Token-authenticated API calls
carry no cookie a third-party site could ride on, so they need no CSRF token."""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tasks import services
from tasks.models import Message
from tests.conftest import token_client
from tests.factories import AdminFactory, UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

API_PREFIX = "api/v1/"
# The token endpoint authenticates no session: it needs the password itself, and its answer cannot be
# read by another site, so it is the one POST without CSRF protection.
CSRF_FREE_API = {"api/v1/auth/token/"}
GROUP = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>|\(\?P<(?P<regex_name>\w+)>[^)]*\)")


def routes(patterns=None, prefix: str = ""):
    """(route text, callback) of every URL pattern, with the prefixes of the includes above it."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        text = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, text)
        elif isinstance(pattern, URLPattern):
            yield text.replace("^", "").replace("$", ""), pattern.callback


def url_for(route: str, samples: dict) -> str:
    def sample(match):
        name = match.group("name") or match.group("regex_name")
        return str(samples.get(name, "1"))

    return "/" + GROUP.sub(sample, route).replace(".*", "anything/")


def database_state() -> dict:
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in apps.get_models()}


@pytest.fixture
def csrf_world(db, small_trees) -> dict:
    admin = AdminFactory(username="root")
    author, reviewer = UserFactory(), UserFactory()
    prompt = write_prompt(author, text="How do tides work?")
    review_of(reviewer, prompt)
    services.lottery_activate(lang="en")  # activation runs on commit, which the test transaction never does
    reply = reply_to(reviewer, prompt, "The moon pulls the oceans.")
    flag = services.message_report(user=author, message_id=reply.pk, reason="Looks wrong")
    task = services.task_request(user=admin, task_type="label_assistant_reply", lang="en")
    samples = {"message_id": reply.pk, "task_id": task.pk, "tree_id": prompt.tree_id, "flag_id": flag.pk,
               "object_id": reply.pk, "id": author.pk, "frame": "week", "decision": "ban", "action": "delete",
               "app_label": "tasks", "key": "abc", "uidb36": "1", "content_type_id": "1", "run_id": "1",
               "name": "loss", "url": "anything/"}
    body = {"text": "Changed by a forged request", "display_name": "Forged", "preferred_language": "de",
            "show_on_leaderboard": "", "accept": "on", "action": "rotate", "lang": "de", "reason": "forged",
            "emoji": "+1", "op": "add", "add_emoji": "+1", "username": admin.username, "type": "random",
            "comment": "forged", "label-spam": "1", "label-lang_mismatch": "0", "report": "on",
            "ranking": [str(reply.pk)], "not_rankable": "on", "next": "/", "login": admin.username,
            "password": "x", "email": "forged@example.org", "oldpassword": "x", "password1": "Forged-123456",
            "password2": "Forged-123456", "decision": "ban", "state": "halted_by_moderator",
            "_selected_action": [str(reply.pk)], "index": "0", "apply": "1"}
    return {"admin": admin, "samples": samples, "body": body, "reply": reply, "task": task}


def web_routes() -> list[str]:
    return sorted({route for route, _callback in routes() if not route.startswith(API_PREFIX)})


def api_post_routes() -> list[str]:
    return sorted({route for route, callback in routes() if route.startswith(API_PREFIX)
                   and hasattr(getattr(callback, "cls", None), "post")})


def test_enumeration_finds_the_state_changing_pages():
    found = web_routes()
    for route in ("tasks/<uuid:task_id>/submit/", "tasks/<uuid:task_id>/skip/", "tasks/new/", "terms/",
                  "language/", "messages/<uuid:message_id>/emoji/", "messages/<uuid:message_id>/report/",
                  "profile/settings/", "profile/token/", "profile/delete/", "accounts/logout/",
                  "admin/tasks/message/", "admin/tasks/flaggedmessage/<int:flag_id>/resolve/<str:decision>/",
                  "admin/oasst/user/<path:object_id>/change/"):
        assert route in found
    assert len(found) > 80
    assert "api/v1/tasks/<uuid:task_id>/submit/" in api_post_routes()


def test_no_page_view_is_exempt_from_csrf():
    exempt = [route for route, callback in routes()
              if not route.startswith(API_PREFIX) and getattr(callback, "csrf_exempt", False)]
    assert exempt == []


def test_every_page_refuses_a_post_without_csrf_token_and_changes_nothing(csrf_world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(csrf_world["admin"])
    before = database_state()
    accepted = []
    for route in web_routes():
        url = url_for(route, csrf_world["samples"])
        response = client.post(url, csrf_world["body"])
        if response.status_code != 403 or b"CSRF" not in response.content:
            accepted.append((url, response.status_code))
    assert accepted == []
    assert database_state() == before


def test_a_post_with_the_csrf_token_gets_through(csrf_world):
    """The control: the 403s above come from the missing token, not from the request itself."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(csrf_world["admin"])
    client.get("/profile/settings/")
    token = client.cookies["csrftoken"].value
    response = client.post("/profile/settings/", {"display_name": "With token", "preferred_language": "en",
                                                  "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    csrf_world["admin"].refresh_from_db()
    assert csrf_world["admin"].display_name == "With token"


def test_session_authenticated_api_posts_need_a_csrf_token(csrf_world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(csrf_world["admin"])
    before = database_state()
    accepted = []
    for route in api_post_routes():
        if route in CSRF_FREE_API:
            continue
        url = url_for(route, csrf_world["samples"])
        response = client.post(url, {"text": "forged", "reason": "forged", "emoji": "+1", "decision": "ban",
                                     "state": "halted_by_moderator", "type": "random", "lang": "en"}, format="json")
        if response.status_code != 403 or "CSRF" not in response.json()["detail"]:
            accepted.append((url, response.status_code))
    assert accepted == []
    assert database_state() == before


def test_the_token_endpoint_is_the_only_api_post_without_csrf():
    assert CSRF_FREE_API <= set(api_post_routes())
    assert CSRF_FREE_API == {route for route, callback in routes() if route.startswith(API_PREFIX)
                             and hasattr(getattr(callback, "cls", None), "post")
                             and getattr(callback.cls, "authentication_classes", None) == []}


def test_token_authenticated_api_posts_need_no_csrf_token(csrf_world):
    user = UserFactory(tos_accepted_at=None)
    response = token_client(user).post("/api/v1/users/me/accept-tos/")
    assert response.status_code == 200
    reply = Message.objects.get(pk=csrf_world["reply"].pk)
    response = token_client(user).post(f"/api/v1/messages/{reply.pk}/emoji/", {"emoji": "+1"}, format="json")
    assert response.status_code == 200
