"""Structured logs: a request id on every record, one JSON object a line, one access line per
request, and no personal data (emails, passwords, tokens, query strings) in any of them."""

import io
import json
import logging
import re

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from oasst.logging import JsonFormatter, PlainFormatter, RequestIdFilter, request_id_from_header, request_id_var
from tests.oasst.test_settings import run_django

pytestmark = pytest.mark.django_db

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def json_logs():
    """The root logger's records during the test, formatted as production formats them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    lines.raw = buffer.getvalue
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


# --- request ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["0af7651916cd43dd8448eb211c80319c", "req-42", "trace:span.1_x"])
def test_a_plain_short_incoming_request_id_is_kept(incoming):
    assert request_id_from_header(incoming) == incoming


@pytest.mark.parametrize("incoming", [None, "", "a" * 65, "with space", "new\nline", "<script>", "é", "x;y"])
def test_a_missing_long_or_odd_request_id_is_replaced_by_a_new_one(incoming):
    made = request_id_from_header(incoming)
    assert HEX_ID.fullmatch(made) and made != incoming


def test_every_answer_carries_its_request_id(client):
    made = client.get("/")
    assert HEX_ID.fullmatch(made["X-Request-ID"])
    assert client.get("/").get("X-Request-ID") != made["X-Request-ID"]
    assert client.get("/", HTTP_X_REQUEST_ID="lb-1234")["X-Request-ID"] == "lb-1234"
    replaced = client.get("/", HTTP_X_REQUEST_ID="bad id\r\nSet-Cookie: x=1")["X-Request-ID"]
    assert HEX_ID.fullmatch(replaced)
    assert client.get("/api/v1/users/me/", HTTP_X_REQUEST_ID="api-1")["X-Request-ID"] == "api-1"  # a 401 too


def test_the_request_id_is_cleared_after_the_request(client):
    client.get("/", HTTP_X_REQUEST_ID="done-1")
    assert request_id_var.get() is None


# --- what the logs hold --------------------------------------------------------------------------


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "oasst.access"]


def test_access_line_per_request_with_method_path_status_duration_user_and_request_id(json_logs, user):
    client = Client()
    client.force_login(user)
    response = client.get("/profile/?show=prompts&email=someone@example.org")
    anonymous = Client().get("/leaderboard/", HTTP_X_REQUEST_ID="lb-7")
    first, second = access_lines(json_logs())
    assert (first["method"], first["path"], first["status"], first["user_id"]) == ("GET", "/profile/", 200, user.pk)
    assert first["request_id"] == response["X-Request-ID"]
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["level"] == "INFO" and "time" in first
    assert (second["path"], second["user_id"], second["request_id"]) == ("/leaderboard/", None, "lb-7")
    assert anonymous.status_code == 200
    assert "someone@example.org" not in json_logs.raw() and "show=prompts" not in json_logs.raw()


def test_the_access_log_reads_no_session_of_its_own(client, user, django_assert_num_queries, json_logs):
    client.force_login(user)  # a session cookie the access log could be tempted to resolve
    with django_assert_num_queries(0):
        assert client.get("/favicon.ico").status_code == 301
    [line] = access_lines(json_logs())
    assert line["user_id"] is None  # the view never asked who the user is


def test_sign_up_log_in_token_and_failures_log_json_with_request_ids_and_no_personal_data(json_logs, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"
    email, password = "grace.hopper@example.org", "Sup3r-Secret-Passphrase!"
    client = Client()
    responses = [client.post("/accounts/signup/", {"email": email, "username": "grace", "password1": password,
                                                   "password2": password})]
    assert responses[-1].status_code == 302
    client.logout()
    responses.append(client.post("/accounts/login/", {"login": email, "password": password}))
    assert responses[-1].status_code == 302
    responses.append(client.post("/api/v1/auth/token/", {"username": "grace", "password": password},
                                 content_type="application/json"))
    assert responses[-1].status_code == 200
    key = responses[-1].json()["token"]
    assert Token.objects.filter(key=key).exists()
    responses.append(client.post("/api/v1/auth/token/", {"username": "grace", "password": password + "x"},
                                 content_type="application/json"))
    assert responses[-1].status_code == 400
    responses.append(client.get(f"/no-such-page/?email={email}&token={key}"))
    assert responses[-1].status_code == 404
    responses.append(Client().get("/api/v1/users/me/", HTTP_AUTHORIZATION=f"Token {key}x"))
    assert responses[-1].status_code == 401

    lines = json_logs()
    request_ids = {response["X-Request-ID"] for response in responses}
    assert len(request_ids) == len(responses)
    assert {line["request_id"] for line in access_lines(lines)} == request_ids
    assert all(line["request_id"] in request_ids for line in lines)  # the warnings of the failures too
    assert any(line["logger"] == "django.request" and line["level"] == "WARNING" for line in lines)
    raw = json_logs.raw()
    for secret in [email, "grace.hopper", password, key, "token=", "email="]:
        assert secret not in raw
    assert [line["status"] for line in access_lines(lines)] == [302, 302, 200, 400, 404, 401]


def test_one_time_keys_in_paths_are_not_logged(json_logs, client):
    client.get("/accounts/confirm-email/MTY:1vSecretKey:abcdef/")
    client.get("/accounts/password/reset/key/1a-set-password-secret/")
    paths = [line["path"] for line in access_lines(json_logs())]
    assert paths == ["/accounts/confirm-email/<key>/", "/accounts/password/reset/key/<uidb36>-<key>/"]
    assert "Secret" not in json_logs.raw() and "secret" not in json_logs.raw()


def test_an_error_inside_a_request_is_one_json_line_with_the_traceback_and_request_id(json_logs, client):
    logger = logging.getLogger("oasst.test")
    token = request_id_var.set("req-err")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed", extra={"task_id": 7})
    finally:
        request_id_var.reset(token)
    [line] = json_logs()
    assert (line["message"], line["request_id"], line["task_id"], line["level"]) == ("it failed", "req-err", 7,
                                                                                       "ERROR")
    assert "ValueError: boom" in line["exc_info"]


def test_plain_format_shows_the_request_id_or_a_dash():
    record = logging.LogRecord("oasst.x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    assert PlainFormatter().format(record).endswith("INFO oasst.x [-] hello there")
    token = request_id_var.set("r-9")
    try:
        assert PlainFormatter().format(record).endswith("INFO oasst.x [r-9] hello there")
    finally:
        request_id_var.reset(token)


# --- configuration -------------------------------------------------------------------------------

REQUEST = ("from django.test import Client; "
           "Client().get('/no-such-page/?email=ada@example.org', HTTP_X_REQUEST_ID='cfg-1')")


def test_production_logs_json_lines_to_stdout():
    result = run_django({"DEBUG": "false", "SECRET_KEY": "x" * 60, "ALLOWED_HOSTS": "testserver",
                         "SECURE_SSL_REDIRECT": "false"}, "shell", "-v", "0", "-c", REQUEST)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "oasst.access"]
    assert [(a["path"], a["status"], a["request_id"]) for a in access] == [("/no-such-page/", 404, "cfg-1")]
    assert "ada@example.org" not in result.stdout + result.stderr


def test_log_format_plain_is_text_and_a_bad_format_stops_startup():
    plain = run_django({"LOG_FORMAT": "plain", "ALLOWED_HOSTS": "testserver"}, "shell", "-v", "0", "-c", REQUEST)
    assert plain.returncode == 0, plain.stderr
    assert "oasst.access [cfg-1] GET /no-such-page/ 404" in plain.stdout
    bad = run_django({"LOG_FORMAT": "xml"}, "check")
    assert bad.returncode != 0 and "LOG_FORMAT='xml' is not one of" in bad.stderr
