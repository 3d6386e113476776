"""The leaderboard in Chromium: frame tabs, the visitor's own row, the top-ten chart, a phone width."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from ranking.models import ContributionEvent, EventKind, Frame
from ranking.services import leaderboard_rebuild
from tests.factories import UserFactory


def give_points(user, points: int, *, age: timedelta) -> None:
    at = timezone.now() - age
    ContributionEvent.objects.bulk_create(
        [ContributionEvent(user=user, kind=EventKind.SIMPLE_LABEL, created_at=at) for _ in range(points)])


def log_in(page, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "url": live_server.url,
                               "value": client.cookies[settings.SESSION_COOKIE_NAME].value}])


@pytest.mark.django_db(transaction=True)
def test_switch_frames_and_find_my_row_in_the_browser(live_server, page, screenshot, console_errors):
    me = UserFactory(username="ada", display_name="Ada L.")
    give_points(me, 12, age=timedelta(days=3))
    give_points(me, 2, age=timedelta(hours=2))
    for i, name in enumerate(["Grace H.", "Alan T.", "Edsger D.", "Barbara L.", "Ken T.", "Dennis R."]):
        rival = UserFactory(username=f"rival{i}", display_name=name)
        give_points(rival, 20 - 3 * i, age=timedelta(days=10))
        give_points(rival, i + 1, age=timedelta(hours=1))
    for frame in Frame.values:
        leaderboard_rebuild(frame=frame)
    log_in(page, live_server, me)

    page.goto(live_server.url + "/leaderboard/")
    expect(page.get_by_role("heading", name="Leaderboard")).to_be_visible()
    expect(page.get_by_role("link", name="Week")).to_have_attribute("aria-current", "page")
    own_row = page.locator("tr.mine")
    expect(own_row).to_have_count(1)
    expect(own_row).to_contain_text("Ada L.")
    expect(own_row.locator("td").first).to_have_text("1")  # only Ada earned points 3 days ago
    expect(page.locator("figure.lb-chart svg g.lb-bar")).to_have_count(7)
    screenshot("leaderboard-week")

    page.get_by_role("link", name="Total").click()
    page.wait_for_url(live_server.url + "/leaderboard/total/")
    expect(page.get_by_role("link", name="Total")).to_have_attribute("aria-current", "page")
    expect(page.locator("tbody tr").first).to_contain_text("Grace H.")  # 21 points against Ada's 14
    expect(page.locator("tr.mine td").first).to_have_text("5")  # 21, 19, 17, 15 points above her
    screenshot("leaderboard-total")

    page.get_by_role("link", name="Day").click()
    page.wait_for_url(live_server.url + "/leaderboard/day/")
    expect(page.locator("tbody tr").first).to_contain_text("Dennis R.")
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="Show my row").click()
    expect(page.locator("tr.mine")).to_be_in_viewport()
    screenshot("leaderboard-day-phone")
    assert console_errors == []


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_visitor_sees_the_leaderboard_in_the_browser(live_server, page, screenshot, console_errors):
    for i in range(12):
        give_points(UserFactory(username=f"user{i}", display_name=f"Contributor number {i}"), 3 * i + 1,
                    age=timedelta(hours=1))
    leaderboard_rebuild(frame="week")
    page.goto(live_server.url + "/leaderboard/week/")
    expect(page.locator("tbody tr")).to_have_count(12)
    expect(page.locator("tr.mine")).to_have_count(0)
    expect(page.get_by_role("img", name="Top 10. Points in the last 7 days")).to_be_visible()
    screenshot("leaderboard-anonymous")
    assert console_errors == []
