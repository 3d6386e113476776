"""GET /healthz: 200 when the database (and broker, when configured) answers, 503 naming the failing part."""

from unittest import mock

import pytest
from django.db import OperationalError


@pytest.mark.django_db
def test_healthz_is_ok_when_everything_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"OK\n"


@pytest.mark.django_db
def test_healthz_answers_for_any_host_header(client, settings):
    settings.ALLOWED_HOSTS = ["example.org"]
    assert client.get("/healthz", HTTP_HOST="10.0.0.7:8000").status_code == 200
    assert client.get("/", HTTP_HOST="10.0.0.7:8000").status_code == 400


@pytest.mark.django_db
def test_healthz_is_503_naming_the_database_when_it_fails(client):
    with mock.patch("oasst.health.database_check", side_effect=OperationalError("server closed the connection")):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.content.decode()
    assert "database: OperationalError" in body
    assert "server closed" not in body  # details go to the log, not to the public


@pytest.mark.django_db
def test_healthz_is_503_naming_the_broker_when_it_is_unreachable(client, settings):
    settings.REDIS_URL = settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "broker: ConnectionError" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.broker
def test_healthz_checks_the_real_broker(client):
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_sql_count_header_counts_the_statements_of_a_request(rf, user):
    from oasst.middleware import SqlCountHeaderMiddleware

    def view(request):
        from django.contrib.auth import get_user_model
        from django.http import HttpResponse

        list(get_user_model().objects.all())
        list(get_user_model().objects.filter(pk=user.pk))
        return HttpResponse("ok")

    response = SqlCountHeaderMiddleware(view)(rf.get("/"))
    assert response["X-SQL-Count"] == "2"
