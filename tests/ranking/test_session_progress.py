"""The task page's progress strip: tasks done and points earned since the session began."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ranking import scoring
from ranking.models import ContributionEvent
from ranking.selectors import session_progress
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def event(user, kind, at):
    return ContributionEvent.objects.create(user=user, kind=kind, created_at=at)


def test_only_the_events_since_the_session_began_count(django_assert_num_queries):
    user, other = UserFactory(), UserFactory()
    start = timezone.now()
    event(user, scoring.ASSISTANT_REPLY, start - timedelta(minutes=1))  # before this session
    event(user, scoring.ASSISTANT_REPLY, start + timedelta(seconds=1))
    event(user, scoring.FULL_LABEL, start + timedelta(seconds=2))
    event(other, scoring.RANKING, start + timedelta(seconds=3))  # someone else's
    with django_assert_num_queries(1):
        progress = session_progress(user=user, since=start)
    assert progress == {"tasks": 2, "points": 4 + 2}


def test_points_earned_later_count_as_points_but_not_as_tasks():
    user = UserFactory()
    start = timezone.now()
    event(user, scoring.RANKING, start)
    event(user, scoring.GOOD_RANKING, start)
    event(user, scoring.RANKED_1ST, start)
    assert session_progress(user=user, since=start) == {"tasks": 1, "points": 1 + 1 + 9}


def test_a_new_session_starts_at_nothing():
    user = UserFactory()
    event(user, scoring.PROMPTER_REPLY, timezone.now() - timedelta(hours=1))
    assert session_progress(user=user, since=timezone.now()) == {"tasks": 0, "points": 0}
