"""Sign-up, email verification, log-in by username or email, log-out and password reset (allauth)."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from tests.factories import PASSWORD

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
