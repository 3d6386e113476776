"""The leaderboard page: frames, paging, the visitor's own row and the window around it, the chart,
escaping, and a query count that does not grow with the board."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from ranking.models import ContributionEvent, EventKind, Frame
from ranking.services import leaderboard_rebuild
from ranking.views import CHART_BAR_MAX
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# session, user, the user's ranks, the board's size and build time, the rows (page + top ten + window)
LOGGED_IN_QUERIES = 5
ANONYMOUS_QUERIES = 2


def give_points(user, points: int, *, age: timedelta = timedelta(hours=1)) -> None:
    at = timezone.now() - age
    ContributionEvent.objects.bulk_create(
        [ContributionEvent(user=user, kind=EventKind.SIMPLE_LABEL, created_at=at) for _ in range(points)])


def rebuild_all(now=None) -> None:
    for frame in Frame.values:
        leaderboard_rebuild(frame=frame, now=now)


def ranked_users(n: int) -> list:
    """n users with n, n-1, ..., 1 points this hour: users[i] is ranked i + 1 in every frame."""
    users = [UserFactory(username=f"rank{rank:03d}") for rank in range(1, n + 1)]
    for rank, user in enumerate(users, start=1):
        give_points(user, n + 1 - rank)
    rebuild_all()
    return users


def rows(response) -> list[tuple[int, str]]:
    """(rank, name) of the rows of the main table."""
    html = response.content.decode()
    table = html.split('id="rankings"', 1)[1].split("</table>", 1)[0]
    return [(int(rank), name) for rank, name in
            re.findall(r'<td class="num">(\d+)</td>\s*<th scope="row" class="name"><bdi>([^<]*)', table)]


def own_rows(response) -> list[int]:
    return [int(rank) for rank in re.findall(r'<tr class="mine"[^>]*>\s*<td class="num">(\d+)</td>',
                                             response.content.decode())]


def bar_widths(response) -> dict[int, float]:
    html = response.content.decode()
    return {int(rank): float(width) for rank, width in
            re.findall(r'data-rank="(\d+)">.*?<rect class="bar" x="0" y="\d+" width="([^"]+)"', html, re.S)}


def test_the_page_defaults_to_the_week_and_each_frame_has_its_tab(client):
    today, this_week, this_month, long_ago = (UserFactory(username=name) for name in
                                              ("today", "thisweek", "thismonth", "longago"))
    give_points(today, 1)
    give_points(this_week, 2, age=timedelta(days=3))
    give_points(this_month, 3, age=timedelta(days=20))
    give_points(long_ago, 4, age=timedelta(days=200))
    rebuild_all()

    default = client.get("/leaderboard/")
    assert default.status_code == 200
    assert [name for _, name in rows(default)] == ["Thisweek", "Today"]
    assert '<a href="/leaderboard/week/" aria-current="page">' in default.content.decode()
    expected = {"day": ["Today"], "week": ["Thisweek", "Today"], "month": ["Thismonth", "Thisweek", "Today"],
                "total": ["Longago", "Thismonth", "Thisweek", "Today"]}
    for frame, names in expected.items():
        response = client.get(f"/leaderboard/{frame}/")
        assert [name for _, name in rows(response)] == names
        assert f'<a href="/leaderboard/{frame}/" aria-current="page">' in response.content.decode()


def test_an_unknown_frame_is_404(client):
    assert client.get("/leaderboard/year/").status_code == 404


def test_pages_hold_fifty_entries_each(client):
    ranked_users(60)
    first = client.get("/leaderboard/week/")
    assert [rank for rank, _ in rows(first)] == list(range(1, 51))
    html = first.content.decode()
    assert "Page 1 of 2" in html and 'href="?page=2" rel="next"' in html and 'rel="prev"' not in html

    second = client.get("/leaderboard/week/?page=2")
    assert [rank for rank, _ in rows(second)] == list(range(51, 61))
    assert 'href="?page=1" rel="prev"' in second.content.decode() and 'rel="next"' not in second.content.decode()

    assert [rank for rank, _ in rows(client.get("/leaderboard/week/?page=abc"))][0] == 1
    assert [rank for rank, _ in rows(client.get("/leaderboard/week/?page=99"))][0] == 51


def test_a_board_of_one_page_has_no_page_links(client):
    ranked_users(3)
    assert "Page 1 of" not in client.get("/leaderboard/").content.decode()


def test_the_users_own_row_is_highlighted_on_its_page(client):
    users = ranked_users(8)
    client.force_login(users[2])
    response = client.get("/leaderboard/")
    assert own_rows(response) == [3]
    html = response.content.decode()
    assert "You are <strong>#3</strong> of 8 with 6 points" in html
    assert 'id="around-you"' not in html  # the row is on the page already
    assert 'class="lb-bar mine" data-rank="3"' in html


def test_a_user_off_the_page_sees_their_row_among_the_entries_around_it(client):
    users = ranked_users(60)
    client.force_login(users[56])
    response = client.get("/leaderboard/week/")
    html = response.content.decode()
    assert own_rows(response) == [57]
    around = html.split('id="around-you"', 1)[1]
    assert re.findall(r'<td class="num">(\d+)</td>\s*<th', around) == [str(rank) for rank in range(52, 61)]
    assert 'href="?page=2#me"' in html


def test_an_anonymous_visitor_sees_the_board_without_an_own_row(client):
    ranked_users(4)
    response = client.get("/leaderboard/total/")
    assert response.status_code == 200
    assert [rank for rank, _ in rows(response)] == [1, 2, 3, 4]
    assert own_rows(response) == []
    html = response.content.decode()
    assert "to see where you stand" in html and "You are" not in html


def test_a_hidden_user_is_told_why_their_row_is_missing(client):
    users = ranked_users(4)
    hidden = users[1]
    hidden.show_on_leaderboard = False
    hidden.save(update_fields=["show_on_leaderboard"])
    rebuild_all()
    client.force_login(hidden)
    response = client.get("/leaderboard/")
    assert "You have hidden yourself from the leaderboard" in response.content.decode()
    assert [name for _, name in rows(response)] == ["Rank001", "Rank003", "Rank004"]
    assert own_rows(response) == []


def test_a_user_without_points_in_the_frame_is_told_so(client):
    ranked_users(2)
    client.force_login(UserFactory())
    assert "You have no points in this time frame yet" in client.get("/leaderboard/").content.decode()


def test_an_empty_board_says_so(client):
    response = client.get("/leaderboard/day/")
    assert response.status_code == 200
    assert "No one has points in this time frame yet." in response.content.decode()


def test_the_page_says_when_the_board_was_built(client):
    user = UserFactory()
    give_points(user, 2)
    leaderboard_rebuild(frame="week", now=timezone.now() - timedelta(minutes=3))
    assert "Updated 3\xa0minutes ago." in client.get("/leaderboard/").content.decode()


@pytest.mark.parametrize("size", [5, 60])
def test_the_query_count_does_not_grow_with_the_board(client, django_assert_num_queries, size):
    users = ranked_users(size)
    with django_assert_num_queries(ANONYMOUS_QUERIES):
        assert client.get("/leaderboard/").status_code == 200
    client.force_login(users[-1])  # on the first page of 5; off it (with the window) among 60
    with django_assert_num_queries(LOGGED_IN_QUERIES):
        response = client.get("/leaderboard/")
    assert own_rows(response) == [size]
    with django_assert_num_queries(LOGGED_IN_QUERIES):
        assert client.get("/leaderboard/?page=2").status_code == 200


def test_the_chart_bars_are_proportional_to_the_scores_of_the_top_ten(client):
    scores = [40, 30, 20, 10, 8, 6, 5, 4, 3, 2, 1, 1]
    for rank, points in enumerate(scores, start=1):
        give_points(UserFactory(username=f"c{rank:02d}"), points)
    rebuild_all()
    widths = bar_widths(client.get("/leaderboard/"))
    assert sorted(widths) == list(range(1, 11))  # the top ten only
    for rank, points in enumerate(scores[:10], start=1):
        assert widths[rank] == pytest.approx(widths[1] * points / scores[0], abs=0.1)
    assert widths[1] == CHART_BAR_MAX


def test_the_chart_numbers_stay_svg_numbers_in_every_language(client):
    ranked_users(3)
    widths = bar_widths(client.get("/leaderboard/", HTTP_ACCEPT_LANGUAGE="de"))
    assert widths == {1: CHART_BAR_MAX, 2: pytest.approx(CHART_BAR_MAX * 2 / 3, abs=0.1),
                      3: pytest.approx(CHART_BAR_MAX / 3, abs=0.1)}


def test_html_in_a_display_name_is_escaped(client):
    evil = UserFactory(username="evil", display_name='<img src=x onerror=alert(1)><script>x</script>')
    give_points(evil, 5)
    rebuild_all()
    html = client.get("/leaderboard/").content.decode()
    assert "<script>x</script>" not in html and "<img src=x" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;x&lt;/script&gt;") >= 2  # table, chart
