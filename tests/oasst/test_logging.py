"""Structured logs: a request id on every record, one JSON object a line, one access line per
request, and no personal data (emails, passwords, tokens, query strings) in any of them."""

import io
import json
import logging
import re
from urllib.parse import unquote

import pytest
from django.core import mail
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token

from oasst.logging import JsonFormatter, PlainFormatter, RequestIdFilter, request_id_from_header, request_id_var
from oasst.middleware import SECRET_URL_KWARGS
from tests.factories import UserFactory
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


# --- secrets in paths: redacted by URL pattern -----------------------------------------------------

URLCONFS = ["oasst.urls", "tests.oasst.urls_with_django_auth"]
# Every named group of every URL pattern is either a secret (redacted in the access log) or one of these.
PUBLIC_URL_KWARGS = {"object_id", "app_label", "url", "frame", "task_id", "message_id", "action", "tree_id",
                     "flag_id", "content_type_id", "id", "decision", "name", "run_id", "step"}
# Values a secret group accepts, chosen to hide among the path's other characters: single characters
# present in the static parts and in each other, and the follow-up "set-password" key.
SECRET_SAMPLES = [{"key": "e", "uidb36": "e", "uidb64": "e", "token": "e"},
                  {"key": "set-password", "uidb36": "s", "uidb64": "s", "token": "set-password"},
                  {"key": "MQ:1vKey-e:reset", "uidb36": "1", "uidb64": "MQ", "token": "cz1-e2a"}]


def url_endpoints(urlconf: str):
    """(name, named groups) of every endpoint the resolver knows, included URL lists too."""
    def walk(resolver, groups, namespace):
        for entry in resolver.url_patterns:
            entry_groups = groups | set(entry.pattern.regex.groupindex)
            if isinstance(entry, URLResolver):
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                yield from walk(entry, entry_groups, inner)
            elif entry.name:
                yield f"{namespace}{entry.name}", entry_groups
            else:
                yield None, entry_groups
    return list(walk(get_resolver(urlconf), set(), ""))


def secret_urls() -> list:
    return [pytest.param(urlconf, name, sorted(groups & SECRET_URL_KWARGS), id=f"{urlconf}:{name}")
            for urlconf in URLCONFS for name, groups in url_endpoints(urlconf) if groups & SECRET_URL_KWARGS]


def test_every_url_kwarg_is_known_to_be_secret_or_public():
    for urlconf in URLCONFS:
        names = set().union(*(groups for _, groups in url_endpoints(urlconf)))
        assert names - SECRET_URL_KWARGS - PUBLIC_URL_KWARGS == set(), f"classify these URL kwargs ({urlconf})"
    assert len(secret_urls()) >= 4  # allauth's confirmation and reset links, Django's reset and its follow-up


@pytest.mark.parametrize("sample", SECRET_SAMPLES, ids=["one-char", "set-password", "realistic"])
@pytest.mark.parametrize(("urlconf", "name", "secrets"), secret_urls())
def test_every_secret_in_a_path_is_redacted_by_its_url_pattern(json_logs, client, settings, urlconf, name, secrets,
                                                               sample):
    settings.ROOT_URLCONF = urlconf
    markers = {group: f"ZZ{group.upper()}ZZ" for group in secrets}
    expected = reverse(name, kwargs=markers)
    for group, marker in markers.items():
        expected = expected.replace(marker, f"<{group}>")
    path = reverse(name, kwargs={group: sample[group] for group in secrets})
    client.get(path)
    client.get(path.rstrip("/"))  # the same link without its slash: redirected, still a secret
    logged = [line["path"] for line in access_lines(json_logs())]
    assert logged == [expected, expected.rstrip("/")]


def reset_link(client, user) -> str:
    client.post("/accounts/password/reset/", {"email": user.email})
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+/", mail.outbox[-1].body).group(0)
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


def test_a_reset_link_cannot_be_rebuilt_from_the_access_log(json_logs, client):
    """The whole reset flow through the pages: no logged line holds the uid or any part of the key, and
    putting the user's uid back into a logged path (the attack) gives no working link."""
    from allauth.account.utils import user_pk_to_url_str

    victim = UserFactory()
    uid = user_pk_to_url_str(victim)
    link = reset_link(client, victim)
    form_page = client.get(link, follow=True)
    set_password_path = form_page.redirect_chain[-1][0]
    key = link.rstrip("/").rsplit("/", 1)[1].removeprefix(f"{uid}-")
    paths = [line["path"] for line in access_lines(json_logs())]
    assert "/accounts/password/reset/key/<uidb36>-<key>/" in paths
    for path in paths:
        assert key not in path and f"/{uid}-" not in path, path
        assert not any(key[i:i + 4] in path for i in range(len(key) - 3)), path
    for path in {path for path in paths if "<uidb36>" in path}:
        attacker = Client()
        rebuilt = attacker.get(path.replace("<uidb36>", uid), follow=True)
        assert 'name="password1"' not in rebuilt.content.decode(), path
    assert client.post(set_password_path, {"password1": "brand-new-pass-77",
                                           "password2": "brand-new-pass-77"}).status_code == 302
    victim.refresh_from_db()
    assert victim.check_password("brand-new-pass-77")


# --- control characters: one record, one line ---------------------------------------------------

FORGED = "2026-01-01 00:00:00,000 INFO oasst.access [x] GET /admin/ 200 1.0ms user=1"
NASTY_PATHS = [f"/no-such-page%0a{FORGED.replace(' ', '%20')}", "/a%0d%0aforged", "/esc%1b[31mred",
               "/nel%c2%85x", "/ls%e2%80%a8x", "/ps%e2%80%a9x", "/nul%00x", "/del%7fx", "/tab%09x"]


def plain_logs_handler():
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(PlainFormatter())
    handler.addFilter(RequestIdFilter())
    return buffer, handler


@pytest.mark.parametrize("path", NASTY_PATHS)
def test_control_characters_in_a_path_are_escaped_in_both_formats(json_logs, client, path):
    buffer, handler = plain_logs_handler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        client.get(path)
    finally:
        root.removeHandler(handler)
    plain = [line for line in buffer.getvalue().splitlines() if line.split(" ")[3] == "oasst.access"]
    assert len(plain) == 1 and buffer.getvalue().count("\n") == len(buffer.getvalue().splitlines()), plain
    assert all(not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", line) for line in buffer.getvalue().split("\n"))
    [access] = access_lines(json_logs())
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", access["path"] + access["message"]), access
    for raw, escaped in [("\n", "\\n"), ("\r", "\\r"), ("\x1b", "\\x1b"), ("\x85", "\\x85"), ("\u2028", "\\u2028"),
                         ("\x00", "\\x00"), ("\t", "\\t")]:
        if raw in unquote(path):
            assert escaped in access["path"] and escaped in plain[0], (raw, plain[0])


def test_every_field_of_a_record_is_escaped_in_both_formats(json_logs):
    """Not only the access log's path: any logger, any extra field, the message and its arguments."""
    buffer, handler = plain_logs_handler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("oasst.test\nforged").warning("a %s b\x1b", "x\r\ny", extra={"field": "f\u2029g",
                                                                                        "nested": {"k": "v\nw"}})
    finally:
        root.removeHandler(handler)
    assert buffer.getvalue().count("\n") == 1
    assert "oasst.test\\nforged" in buffer.getvalue() and "a x\\r\\ny b\\x1b" in buffer.getvalue()
    [line] = json_logs()
    assert (line["logger"], line["message"], line["field"], line["nested"]) == (
        "oasst.test\\nforged", "a x\\r\\ny b\\x1b", "f\\u2029g", {"k": "v\\nw"})


def test_a_traceback_in_the_plain_format_cannot_pass_for_a_record():
    """Tracebacks stay readable over several lines, but each continuation line is marked, so an
    exception message with a line break cannot start a line that looks like a record."""
    buffer, handler = plain_logs_handler()
    logger = logging.getLogger("oasst.test")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"boom\n{FORGED}\x1b")
        except ValueError:
            logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
    first, *rest = buffer.getvalue().splitlines()
    assert first.endswith("ERROR oasst.test [-] it failed") and rest
    assert all(line.startswith("  | ") for line in rest), rest
    assert "\x1b" not in buffer.getvalue()


def test_configured_formats_write_one_line_for_a_path_with_a_line_break():
    request = ("from django.test import Client; "
               f"Client().get('/no-such-page/%0a{FORGED.replace(' ', '%20')}', HTTP_X_REQUEST_ID='cfg-2')")
    for log_format in ["plain", "json"]:
        result = run_django({"LOG_FORMAT": log_format, "ALLOWED_HOSTS": "testserver"}, "shell", "-v", "0", "-c",
                            request)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert not [line for line in lines if line.startswith("2026-01-01")], lines
        access = [line for line in lines if (json.loads(line)["logger"] if log_format == "json"
                                             else line.split(" ")[3]) == "oasst.access"]
        assert len(access) == 1 and "/no-such-page/\\n2026-01-01" in access[0].replace("\\\\", "\\"), access
