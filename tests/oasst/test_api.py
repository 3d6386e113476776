"""The API's shared contract: OpenAPI schema, one error format, session and token authentication."""

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from tests.factories import PASSWORD


def test_openapi_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "openapi: 3" in text
    assert "/api/v1/auth/token/" in text and "/api/v1/users/me/" in text


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    assert client.get("/api/v1/schema/").status_code == 200
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


@pytest.mark.django_db
def test_unauthenticated_request_gets_the_error_format(api_client):
    response = api_client.get("/api/v1/users/me/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Authentication credentials were not provided.",
                                "code": "not_authenticated"}


@pytest.mark.django_db
def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.django_db
def test_token_for_username_and_password_then_token_auth_works(api_client, user):
    response = api_client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(user=user).key == key
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    me = api_client.get("/api/v1/users/me/")
    assert me.status_code == 200
    assert me.json()["username"] == user.username
    assert "email" not in me.json()


@pytest.mark.django_db
def test_same_token_is_returned_until_rotated(api_client, user):
    first = api_client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}).json()
    second = api_client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}).json()
    assert first == second


@pytest.mark.django_db
def test_wrong_password_is_refused_with_the_error_format_and_creates_no_token(api_client, user):
    response = api_client.post("/api/v1/auth/token/", {"username": user.username, "password": "wrong"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert "Unable to log in" in body["detail"]
    assert not Token.objects.exists()


@pytest.mark.django_db
def test_missing_fields_name_the_field(api_client):
    body = api_client.post("/api/v1/auth/token/", {"username": "someone"}).json()
    assert body["detail"] == "password: This field is required."
    assert body["errors"] == {"password": ["This field is required."]}


@pytest.mark.django_db
def test_token_endpoint_is_rate_limited(api_client, user):
    for _ in range(10):
        api_client.post("/api/v1/auth/token/", {"username": user.username, "password": "wrong"})
    response = api_client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert "Retry-After" in response.headers


@pytest.mark.django_db
def test_invalid_token_is_refused(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = api_client.get("/api/v1/users/me/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_service_errors_carry_their_code_and_status():
    from rest_framework.test import APIRequestFactory

    from oasst.api import exception_handler
    from oasst.errors import Conflict

    request = APIRequestFactory().post("/api/v1/x/")
    response = exception_handler(Conflict("This task is already done.", code="task_done"), {"request": request})
    assert response.status_code == 409
    assert response.data == {"detail": "This task is already done.", "code": "task_done"}


def test_a_database_outage_answers_503_with_the_error_format_and_a_retry_hint():
    from django.db import OperationalError
    from rest_framework.test import APIRequestFactory

    from oasst.api import exception_handler

    request = APIRequestFactory().post("/api/v1/x/")
    response = exception_handler(OperationalError("server closed the connection"), {"request": request})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.data["code"] == "database_unavailable"
    assert response.data["detail"] == "The database is unavailable; try again shortly."
