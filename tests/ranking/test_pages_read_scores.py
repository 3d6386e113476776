"""Pages never write on GET: the dashboard, the profile, the user admin and the API's users/me read a user's
points (counted from the ledger by ranking.selectors.user_scores) and store nothing. Their query counts are
pinned, so a write slipped into a render fails here."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ranking import scoring
from ranking.models import ContributionEvent, UserScore
from ranking.selectors import user_scores
from ranking.services import user_scores_refresh
from tests.factories import AdminFactory, UserFactory

pytestmark = pytest.mark.django_db

WRITES = ("INSERT", "UPDATE", "DELETE")


def writes_during(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith(WRITES)]


@pytest.fixture
def contributor():
    user = UserFactory()
    now = timezone.now()
    ContributionEvent.objects.bulk_create([ContributionEvent(user=user, kind=kind, created_at=now)
                                           for kind in scoring.KINDS[:3]])
    return user


@pytest.mark.parametrize("url", ["/dashboard/", "/profile/", "/api/v1/users/me/"])
def test_a_contributors_pages_write_nothing_on_get(client, contributor, url):
    client.force_login(contributor)
    client.get(url)  # the first request of a session may write it; the next GET must not write
    assert writes_during(client, url) == []
    assert not UserScore.objects.filter(user=contributor).exists()


def test_the_user_admin_writes_nothing_on_get(client, contributor):
    client.force_login(AdminFactory())
    url = f"/admin/oasst/user/{contributor.pk}/change/"
    client.get(url)
    assert writes_during(client, url) == []
    assert not UserScore.objects.filter(user=contributor).exists()


@pytest.mark.parametrize(("url", "queries"), [("/dashboard/", 9), ("/profile/", 6), ("/api/v1/users/me/", 4)])
def test_a_contributors_pages_query_count_is_pinned(client, contributor, django_assert_num_queries, url, queries):
    client.force_login(contributor)
    client.get(url)
    with django_assert_num_queries(queries):
        assert client.get(url).status_code == 200


def test_the_user_admins_query_count_is_pinned(client, contributor, django_assert_num_queries):
    client.force_login(AdminFactory())
    url = f"/admin/oasst/user/{contributor.pk}/change/"
    client.get(url)
    with django_assert_num_queries(11):
        assert client.get(url).status_code == 200


def test_the_pages_show_the_points_a_refresh_would_store(contributor):
    now = timezone.now()
    shown = {frame: (score.score, score.counts, score.breakdown) for frame, score in
             user_scores(user=contributor, now=now).items()}
    stored = {frame: (score.score, score.counts, score.breakdown) for frame, score in
              user_scores_refresh(user=contributor, now=now).items()}
    assert shown == stored
    assert shown["total"][0] > 0
