"""Production hardening: the Content-Security-Policy and the other security headers on pages, API and
admin; pages with no inline script or style for the policy to block; secure cookies in production;
"log out everywhere" revoking every session and the API token."""

import json
import re
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from rest_framework.authtoken.models import Token

from oasst import services
from tests.conftest import token_client
from tests.factories import PASSWORD, AdminFactory, UserFactory
from tests.oasst.test_settings import run_django
from tests.tasks.builders import write_prompt

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def csp_directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def assert_strict_csp(response):
    policy = csp_directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response["Content-Security-Policy"]


def assert_security_headers(response):
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.fixture
def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_(db):
    client = Client()
    client.force_login(AdminFactory())
    return client


# --- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/accounts/signup/", "/leaderboard/", "/terms/",
                                  "/api/v1/docs/", "/no-such-page/"])
def test_public_pages_carry_the_csp_and_the_security_headers(client, path):
    response = client.get(path)
    assert response.status_code in (200, 404)
    assert_strict_csp(response)
    assert_security_headers(response)


@pytest.mark.parametrize("path", ["/dashboard/", "/messages/", "/profile/", "/profile/settings/"])
def test_logged_in_pages_carry_the_csp_and_the_security_headers(logged_in, path):
    response = logged_in.get(path)
    assert response.status_code == 200
    assert_strict_csp(response)
    assert_security_headers(response)


def test_api_answers_carry_the_csp_and_the_security_headers(user):
    response = token_client(user).get("/api/v1/users/me/")
    assert response.status_code == 200
    assert_strict_csp(response)
    assert_security_headers(response)
    refused = Client().get("/api/v1/users/me/")
    assert refused.status_code == 401
    assert_strict_csp(refused)
    assert_security_headers(refused)


@pytest.mark.parametrize("path", ["/admin/", "/admin/tasks/message/", "/admin/oasst/user/", "/admin/oasst/user/add/"])
def test_admin_pages_carry_the_csp_and_the_security_headers(admin_client_, path):
    response = admin_client_.get(path)
    assert response.status_code == 200
    assert_strict_csp(response)
    assert_security_headers(response)


def test_hsts_is_sent_over_https_with_the_production_setting(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_SSL_REDIRECT = False
    response = client.get("/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "Strict-Transport-Security" not in client.get("/")  # never over plain HTTP


def test_production_settings_turn_on_https_only_cookies_and_hsts():
    """DEBUG=false alone (nothing overridden) gives HSTS, HTTPS redirects and secure, HttpOnly,
    SameSite cookies."""
    names = ["SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE",
             "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE",
             "CSRF_COOKIE_SAMESITE", "LOG_FORMAT"]
    result = run_django({"DEBUG": "false", "SECRET_KEY": "x" * 60, "ALLOWED_HOSTS": "example.org"}, "shell", "-c",
                        "import json; from django.conf import settings; "
                        f"print(json.dumps({{name: getattr(settings, name) for name in {names!r}}}))")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {"SECURE_HSTS_SECONDS": 31536000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
                      "SECURE_SSL_REDIRECT": True, "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
                      "SESSION_COOKIE_HTTPONLY": True, "CSRF_COOKIE_HTTPONLY": True,
                      "SESSION_COOKIE_SAMESITE": "Lax", "CSRF_COOKIE_SAMESITE": "Lax", "LOG_FORMAT": "json"}


def test_login_sets_secure_httponly_samesite_cookies_in_production(client, settings, user):
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    client.get("/accounts/login/")
    csrf = client.cookies["csrftoken"]
    assert csrf["secure"] and csrf["httponly"] and csrf["samesite"] == "Lax"
    response = client.post("/accounts/login/", {"login": user.username, "password": PASSWORD})
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"


# --- no inline script or style for the policy to block --------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


def inline_code(html: str) -> list[str]:
    """What a strict CSP would block in this HTML: inline scripts, style elements and attributes,
    event-handler attributes, javascript: URLs. JSON data blocks (<script type="application/json">)
    are data, not code, and allowed."""
    found = [match.group(0) for match in INLINE_SCRIPT.finditer(html)
             if 'type="application/json"' not in match.group(0)]
    for pattern in (INLINE_STYLE, INLINE_HANDLER, JAVASCRIPT_URL):
        found += [match.group(0) for match in pattern.finditer(html)]
    return found


def test_the_inline_code_detector_finds_what_the_policy_blocks():
    assert inline_code('<script>alert(1)</script>') == ["<script>"]
    assert inline_code('<div style="color:red">') == [' style=']
    assert inline_code('<button onclick="go()">') == ['<button onclick=']
    assert inline_code('<a href="javascript:go()">') == ['href="javascript:']
    assert inline_code('<style>p{}</style>') == ["<style"]
    assert inline_code('<script src="/static/a.js" defer></script><script type="application/json" id="d">'
                       '{}</script><p>on=1 style</p>') == []


def template_files() -> list[Path]:
    folders = [ROOT / app / "templates" for app in ("oasst", "tasks", "ranking", "training")]
    return sorted(path for folder in folders if folder.exists() for path in folder.rglob("*.html"))


def test_no_project_template_has_inline_script_or_style():
    templates = template_files()
    assert len(templates) > 20
    offenders = {str(path.relative_to(ROOT)): found for path in templates
                 if (found := inline_code(re.sub(r"{#.*?#}|{% comment %}.*?{% endcomment %}", "",
                                                 path.read_text(encoding="utf-8"), flags=re.DOTALL)))}
    assert offenders == {}


@pytest.fixture
def some_content(user):
    return write_prompt(UserFactory(), text="Why is the sky blue?")


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/",
                                  "/leaderboard/", "/terms/", "/api/v1/docs/"])
def test_rendered_public_pages_have_no_inline_code(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert inline_code(response.content.decode()) == []


@pytest.mark.parametrize("path", ["/dashboard/", "/messages/", "/profile/", "/profile/settings/", "/profile/token/",
                                  "/profile/delete/", "/accounts/email/", "/accounts/password/change/"])
def test_rendered_logged_in_pages_have_no_inline_code(logged_in, some_content, path):
    response = logged_in.get(path)
    assert response.status_code == 200
    assert inline_code(response.content.decode()) == []


@pytest.mark.parametrize("path", ["/admin/", "/admin/tasks/message/", "/admin/tasks/messagetree/", "/admin/oasst/user/",
                                  "/admin/oasst/user/add/", "/admin/oasst/moderationevent/",
                                  "/admin/tasks/flaggedmessage/statistics/", "/admin/tasks/flaggedmessage/trollboard/"])
def test_rendered_admin_pages_have_no_inline_code(admin_client_, some_content, path):
    response = admin_client_.get(path)
    assert response.status_code == 200
    assert inline_code(response.content.decode()) == []


def test_admin_change_pages_of_a_message_and_its_tree_have_no_inline_code(admin_client_, some_content):
    for path in (f"/admin/tasks/message/{some_content.pk}/change/",
                 f"/admin/tasks/messagetree/{some_content.tree_id}/change/"):
        response = admin_client_.get(path)
        assert response.status_code == 200
        assert "Why is the sky blue?" in response.content.decode()
        assert inline_code(response.content.decode()) == []


def test_api_docs_load_their_start_up_script_as_a_file(client):
    page = client.get("/api/v1/docs/").content.decode()
    script_url = re.search(r'<script src="([^"]*\?[^"]*script[^"]*)"', page).group(1).replace("&amp;", "&")
    script = client.get(script_url)
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()
    assert '"validatorUrl": null' in script.content.decode()  # no badge image from outside


# --- sessions and tokens are revocable ------------------------------------------------------------


def logged_in_client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_logout_everywhere_ends_every_session_and_revokes_the_api_token(user):
    other = UserFactory()
    laptop, phone, theirs = logged_in_client(user), logged_in_client(user), logged_in_client(other)
    api = token_client(user)
    their_api = token_client(other)
    assert api.get("/api/v1/users/me/").status_code == 200

    revoked = services.logout_everywhere(user=user)

    assert revoked == {"sessions": 2, "tokens": 1}
    assert laptop.get("/profile/").status_code == 302 and phone.get("/profile/").status_code == 302
    assert api.get("/api/v1/users/me/").status_code == 401
    assert not Token.objects.filter(user=user).exists()
    assert theirs.get("/profile/").status_code == 200 and their_api.get("/api/v1/users/me/").status_code == 200
    assert Session.objects.count() == 1
    assert logged_in_client(user).get("/profile/").status_code == 200  # the password still works


def test_logout_everywhere_button_logs_out_here_and_elsewhere(user):
    here, elsewhere = logged_in_client(user), logged_in_client(user)
    Token.objects.create(user=user)
    settings_page = here.get("/profile/settings/").content.decode()
    assert 'action="/profile/logout-everywhere/"' in settings_page
    response = here.post("/profile/logout-everywhere/", follow=True)
    assert response.redirect_chain[0] == ("/accounts/login/", 302)
    assert "logged out everywhere: 2 sessions ended, 1 API tokens revoked" in response.content.decode()
    assert here.get("/profile/").status_code == 302 and elsewhere.get("/profile/").status_code == 302
    assert not Token.objects.filter(user=user).exists()


def test_logout_everywhere_refuses_get_and_anonymous_and_csrf_less_posts(user):
    client = logged_in_client(user)
    assert client.get("/profile/logout-everywhere/").status_code == 405
    assert Client().post("/profile/logout-everywhere/").status_code == 302  # to the login page
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/profile/logout-everywhere/").status_code == 403
    assert client.get("/profile/").status_code == 200  # nothing was revoked
