"""Sentry, on only with SENTRY_DSN: an error in a view reaches it without the user's email, name or address,
cookies, tokens, the query string or the text that was posted."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import sentry_sdk
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from sentry_sdk.transport import Transport

from oasst.sentry import scrub_event, sentry_init
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
DSN = "https://public-key@sentry.example.org/42"
# Made at run time: the source lines Sentry sends around a failing line must not contain them either.
POSTED_TEXT = f"My grandmother's recipe, told in confidence {secrets.token_hex(4)}"
API_KEY = secrets.token_hex(12)
AUTH_TOKEN = secrets.token_hex(20)
IP = f"203.0.113.{secrets.randbelow(200) + 20}"


@csrf_exempt  # the probe posts without a form; CSRF is proven elsewhere
def failing_view(request):
    text = request.POST["text"]  # a local variable holding the contributor's text when the view fails
    raise RuntimeError(f"view failed after reading {len(text)} characters")


def working_view(request):
    return HttpResponse("ok")


urlpatterns = [path("fail/", failing_view), path("ok/", working_view)]


class CapturingTransport(Transport):
    def __init__(self, options=None):
        super().__init__(options)
        self.envelopes = []

    def capture_envelope(self, envelope):
        self.envelopes.append(envelope)


@pytest.fixture
def transport():
    transport = CapturingTransport()
    sentry_init(dsn=DSN, environment="test", release="1.2.3", traces_sample_rate=0.0, transport=transport)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.mark.django_db
@pytest.mark.urls("tests.oasst.test_sentry")
def test_an_error_in_a_view_reaches_sentry_without_personal_data(transport):
    user = UserFactory(username="grandchild", email="grandchild@example.org")
    signed_in = Client()
    signed_in.force_login(user)
    session_cookie = signed_in.cookies["sessionid"].value
    # Through the WSGI application, as gunicorn calls it (Sentry's WSGI middleware reads the request there).
    environ = RequestFactory().post(
        "/fail/?email=grandchild%40example.org&key=reset-key-42", {"text": POSTED_TEXT}, REMOTE_ADDR=IP,
        HTTP_X_FORWARDED_FOR=IP, HTTP_AUTHORIZATION=f"Token {AUTH_TOKEN}", HTTP_X_API_KEY=API_KEY,
        HTTP_COOKIE=f"sessionid={session_cookie}").environ
    statuses = []
    b"".join(get_wsgi_application()(environ, lambda status, headers, *args: statuses.append(status)))
    assert statuses == ["500 Internal Server Error"]
    sentry_sdk.flush()

    events = [envelope.get_event() for envelope in transport.envelopes if envelope.get_event()]
    assert len(events) == 1
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["environment"] == "test" and event["release"] == "1.2.3"
    assert event["transaction"] == "/fail/"  # the route says where, without the URL
    assert event["request"]["method"] == "POST"
    sent = json.dumps(event)
    for secret in ("grandchild", IP, AUTH_TOKEN, API_KEY, session_cookie, POSTED_TEXT, "reset-key-42", "public-key"):
        assert secret not in sent, f"{secret!r} was sent to Sentry"


@pytest.mark.django_db
@pytest.mark.urls("tests.oasst.test_sentry")
def test_a_request_that_succeeds_sends_nothing(transport):
    assert Client().get("/ok/").status_code == 200
    sentry_sdk.flush()
    assert transport.envelopes == []


def test_the_scrubber_removes_each_personal_field():
    event = {
        "user": {"id": "7", "email": "a@example.org", "username": "alice", "ip_address": IP},
        "request": {"url": "https://oasst.example.org/accounts/password/reset/key/1-abc/", "method": "POST",
                    "query_string": "email=a@example.org", "cookies": {"sessionid": "s3cr3t"},
                    "data": {"text": POSTED_TEXT},
                    "headers": {"Authorization": f"Token {AUTH_TOKEN}", "X-Api-Key": API_KEY, "Cookie": "s=1",
                                "X-Forwarded-For": IP, "User-Agent": "pytest"},
                    "env": {"REMOTE_ADDR": IP, "SERVER_NAME": "web"}},
        "exception": {"values": [{"stacktrace": {"frames": [{"function": "view", "vars": {"text": POSTED_TEXT}}]}}]},
        "logentry": {"message": "reply %s refused", "params": [POSTED_TEXT], "formatted": f"reply {POSTED_TEXT}"},
        "extra": {"celery-job": {"task_name": "ranking.tree_score", "args": [POSTED_TEXT], "kwargs": {}}},
        "breadcrumbs": {"values": [{"category": "query", "message": "SELECT 1", "data": {"params": [POSTED_TEXT]}}]},
    }
    scrubbed = scrub_event(event, {})
    sent = json.dumps(scrubbed)
    for secret in ("a@example.org", "alice", IP, AUTH_TOKEN, API_KEY, "s3cr3t", POSTED_TEXT, "1-abc"):
        assert secret not in sent
    assert scrubbed["user"] == {"id": "7"}
    assert scrubbed["request"]["headers"] == {"User-Agent": "pytest"}
    assert scrubbed["request"]["method"] == "POST"
    assert scrubbed["logentry"] == {"message": "reply %s refused"}
    assert scrubbed["extra"]["celery-job"] == {"task_name": "ranking.tree_score"}


def test_without_a_dsn_sentry_stays_off_and_a_dsn_is_never_printed():
    script = ("import django, sentry_sdk; django.setup(); "
              "print('on' if sentry_sdk.get_client().is_active() else 'off')")
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "oasst.settings"}
    environment.pop("SENTRY_DSN", None)
    off = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True,
                         text=True, timeout=120)
    on = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment | {"SENTRY_DSN": DSN},
                        capture_output=True, text=True, timeout=120)
    assert off.stdout.strip() == "off"
    assert on.stdout.strip() == "on"
    assert "public-key" not in on.stdout + on.stderr
