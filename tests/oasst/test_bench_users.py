"""bench_users: benchmark contributors with tokens, created once; refused when DEBUG is off."""

import json

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.mark.django_db
def test_bench_users_writes_working_tokens_and_is_idempotent(settings, tmp_path):
    settings.DEBUG = True
    out = tmp_path / "tokens.json"
    call_command("bench_users", "--count", "3", "--out", str(out))
    first = json.loads(out.read_text())
    call_command("bench_users", "--count", "3", "--out", str(out))

    assert json.loads(out.read_text()) == first
    users = get_user_model().objects.filter(username__startswith="bench-user-")
    assert sorted(users.values_list("username", flat=True)) == ["bench-user-1", "bench-user-2", "bench-user-3"]
    assert all(user.tos_accepted_at is not None for user in users)
    assert EmailAddress.objects.filter(user__in=users, verified=True, primary=True).count() == 3
    assert sorted(Token.objects.filter(user__in=users).values_list("key", flat=True)) == sorted(first)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first[0]}")
    assert client.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).status_code == 201


@pytest.mark.django_db
def test_bench_users_accepts_the_terms_for_an_existing_account(settings, tmp_path):
    settings.DEBUG = True
    get_user_model().objects.create_user(username="bench-user-1", email="bench-user-1@example.org")
    call_command("bench_users", "--count", "1", "--out", str(tmp_path / "tokens.json"))
    assert get_user_model().objects.get(username="bench-user-1").tos_accepted_at is not None


@pytest.mark.django_db
def test_bench_users_refuses_without_debug(settings, tmp_path):
    settings.DEBUG = False
    out = tmp_path / "tokens.json"
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("bench_users", "--count", "2", "--out", str(out))
    assert not get_user_model().objects.exists()
    assert not out.exists()


@pytest.mark.django_db
def test_bench_users_runs_without_debug_when_forced(settings, tmp_path):
    settings.DEBUG = False
    out = tmp_path / "tokens.json"
    call_command("bench_users", "--count", "1", "--out", str(out), "--force")
    assert len(json.loads(out.read_text())) == 1
