"""Sign-up, email verification, log-in by username or email, log-out and password reset (allauth)."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core import mail
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.conftest import token_client
from tests.factories import PASSWORD, UserFactory

User = get_user_model()
SIGNUP = {"username": "newbie", "email": "newbie@example.org",
          "password1": "a-long-pass-phrase-42", "password2": "a-long-pass-phrase-42"}


def confirmation_link(message) -> str:
    return re.search(r"https?://[^\s]+/accounts/confirm-email/[^\s]+/", message.body).group(0)


@pytest.mark.django_db
def test_signup_sends_a_verification_email_and_confirming_logs_in(client):
    response = client.post("/accounts/signup/", SIGNUP)
    assert response.status_code == 302
    assert response.url == "/accounts/confirm-email/"
    user = User.objects.get(username="newbie")
    assert user.tos_accepted_at is None and not user.is_banned
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["newbie@example.org"]

    link = confirmation_link(mail.outbox[0])
    path = link.split("://", 1)[1].split("/", 1)[1]
    assert client.get("/" + path).status_code == 200
    response = client.post("/" + path)
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == user.pk
    assert user.emailaddress_set.get().verified


@pytest.mark.django_db
def test_the_sign_up_email_names_this_site_not_example_com(client):
    client.post("/accounts/signup/", SIGNUP)
    body = mail.outbox[0].subject + mail.outbox[0].body
    assert "Hello from OASST!" in body and "example.com" not in body


@pytest.mark.django_db
def test_migrate_sets_the_sites_name_and_domain_from_the_settings(settings):
    from django.contrib.sites.models import Site

    settings.SITE_NAME, settings.SITE_DOMAIN = "Tide Pool", "tides.example.org"
    call_command("migrate", verbosity=0)
    site = Site.objects.get_current()
    assert (site.name, site.domain) == ("Tide Pool", "tides.example.org")


@pytest.mark.django_db
def test_unverified_user_cannot_log_in_yet(client):
    client.post("/accounts/signup/", SIGNUP)
    client.logout()
    response = client.post("/accounts/login/", {"login": "newbie", "password": SIGNUP["password1"]})
    assert response.status_code == 302 and response.url == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_signup_with_a_taken_username_is_refused_and_creates_nothing(client, user):
    before = User.objects.count()
    response = client.post("/accounts/signup/", {**SIGNUP, "username": user.username})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.count() == before
    assert mail.outbox == []


@pytest.mark.django_db
def test_signup_with_mismatched_passwords_is_refused(client):
    response = client.post("/accounts/signup/", {**SIGNUP, "password2": "something-else-42"})
    assert response.status_code == 200
    assert not User.objects.filter(username="newbie").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("login", ["username", "email"])
def test_login_with_username_or_email(client, user, login):
    response = client.post("/accounts/login/", {"login": getattr(user, login), "password": PASSWORD})
    assert response.status_code == 302 and response.url == "/dashboard/"
    assert int(client.session["_auth_user_id"]) == user.pk
    dashboard = client.get("/dashboard/")
    assert user.public_name in dashboard.content.decode()


@pytest.mark.django_db
def test_wrong_password_does_not_log_in(client, user):
    response = client.post("/accounts/login/", {"login": user.username, "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_repeated_failed_logins_are_rate_limited(client, user):
    for _ in range(5):
        client.post("/accounts/login/", {"login": user.username, "password": "nope"})
    response = client.post("/accounts/login/", {"login": user.username, "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert "Too many failed login attempts" in response.content.decode()


@pytest.mark.django_db
def test_logout_ends_the_session(client, user):
    client.force_login(user)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_password_reset_sends_a_link_that_sets_a_new_password(client, user):
    client.post("/accounts/password/reset/", {"email": user.email})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^\s]+/accounts/password/reset/key/[^\s]+/", mail.outbox[0].body).group(0)
    path = "/" + link.split("://", 1)[1].split("/", 1)[1]
    form_page = client.get(path, follow=True)
    response = client.post(form_page.redirect_chain[-1][0],
                           {"password1": "brand-new-pass-77", "password2": "brand-new-pass-77"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("brand-new-pass-77")


@pytest.mark.django_db
def test_pages_answer(client):
    for path in ["/", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]:
        assert client.get(path).status_code == 200, path


@pytest.mark.django_db
def test_account_pages_use_the_site_layout(client):
    for path in ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]:
        assert 'class="site-header"' in client.get(path).content.decode(), path


# --- a new password revokes the API token and ends the other sessions ---------------------------------

NEW_PASSWORD = "brand-new-pass-77"


def reset_through_the_pages(client, user, admin):
    client.post("/accounts/password/reset/", {"email": user.email})
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+/", mail.outbox[-1].body).group(0)
    form_page = client.get("/" + link.split("://", 1)[1].split("/", 1)[1], follow=True)
    return client.post(form_page.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})


def change_through_the_pages(client, user, admin):
    client.force_login(user)
    return client.post("/accounts/password/change/", {"oldpassword": PASSWORD, "password1": NEW_PASSWORD,
                                                      "password2": NEW_PASSWORD})


def set_through_the_pages(client, user, admin):
    client.force_login(user)
    return client.post("/accounts/password/set/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})


def set_by_a_superuser_in_the_admin(client, user, admin):
    client.force_login(admin)
    return client.post(f"/admin/oasst/user/{user.pk}/password/", {"usable_password": "true",
                                                                  "password1": NEW_PASSWORD,
                                                                  "password2": NEW_PASSWORD})


def set_with_the_changepassword_command(client, user, admin, monkeypatch=None):
    from django.contrib.auth.management.commands import changepassword

    monkeypatch.setattr(changepassword.getpass, "getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", user.username, stdout=io.StringIO())


PASSWORD_PATHS = [reset_through_the_pages, change_through_the_pages, set_through_the_pages,
                  set_by_a_superuser_in_the_admin, set_with_the_changepassword_command]
KEEPS_THIS_SESSION = {change_through_the_pages, set_through_the_pages}  # allauth: LOGOUT_ON_PASSWORD_CHANGE off


@pytest.mark.django_db
@pytest.mark.parametrize("set_password", PASSWORD_PATHS, ids=lambda path: path.__name__)
def test_a_new_password_revokes_the_api_token_and_ends_other_sessions(client, user, admin_user, monkeypatch,
                                                                      set_password):
    """Whoever holds a stolen token or session loses it when the owner resets or changes the password,
    whichever way the password is set; a bystander's token and session are untouched."""
    if set_password is set_through_the_pages:  # a social-login account sets its first password
        user.set_unusable_password()
        user.save()
    bystander = UserFactory()
    stolen_session, bystander_session = Client(), Client()
    stolen_session.force_login(user)
    bystander_session.force_login(bystander)
    stolen_token, bystander_token = token_client(user), token_client(bystander)
    assert stolen_token.get("/api/v1/users/me/").status_code == 200
    assert stolen_session.get("/profile/").status_code == 200

    kwargs = {"monkeypatch": monkeypatch} if set_password is set_with_the_changepassword_command else {}
    response = set_password(client, user, admin_user, **kwargs)
    assert response is None or response.status_code == 302, response.content.decode()[:2000]

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not Token.objects.filter(user=user).exists()
    assert stolen_token.get("/api/v1/users/me/").status_code == 401
    assert stolen_session.get("/profile/").status_code == 302
    assert "_auth_user_id" not in stolen_session.session
    assert bystander_token.get("/api/v1/users/me/").status_code == 200
    assert bystander_session.get("/profile/").status_code == 200
    if set_password in KEEPS_THIS_SESSION:
        assert client.get("/profile/").status_code == 200
    assert client.post("/api/v1/auth/token/", {"username": user.username, "password": NEW_PASSWORD},
                       content_type="application/json").status_code == 200, "a new token can be had"


@pytest.mark.django_db
def test_a_rehash_on_log_in_keeps_the_token(client, user, settings):
    """Django re-hashes a password at log-in when the hasher changed: that is not a new password."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher",
                                 "django.contrib.auth.hashers.MD5PasswordHasher"]
    user.password = make_password(PASSWORD, hasher="md5")
    user.save()
    token = token_client(user)
    assert client.post("/accounts/login/", {"login": user.username, "password": PASSWORD}).status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_")
    assert token.get("/api/v1/users/me/").status_code == 200
