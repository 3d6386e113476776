"""Consensus on a tree driven through the API; points, leaderboard and trollboard."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from ranking import services
from ranking.jobs import leaderboard_rebuild_job
from ranking.models import ContributionEvent, LeaderboardEntry, Ranking, RankingResult
from tasks.models import MessageTree
from tests.conftest import token_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, path, body=None):
    response = client.post(path, body or {}, format="json")
    assert response.status_code in (200, 201), response.json()
    return response.json()


def task(client, task_type):
    return post(client, "/api/v1/tasks/", {"type": task_type, "lang": "en"})


def label(client, task_type):
    t = task(client, task_type)
    return post(client, f"/api/v1/tasks/{t['id']}/submit/", {"labels": {"spam": 0, "lang_mismatch": 0}})


@pytest.fixture
def three_replies(tree_settings):
    tree_settings(goal_tree_size=4, num_reviews_reply=1, num_reviews_initial_prompt=1, num_required_rankings=3,
                  p_full_labeling_review_prompt=0.0, p_full_labeling_review_reply_assistant=0.0)
    users = {name: UserFactory(username=name) for name in ("asker", "ann", "ben", "cid", "r1", "r2", "r3", "rev")}
    clients = {name: token_client(user) for name, user in users.items()}
    prompt_task = task(clients["asker"], "initial_prompt")
    prompt = post(clients["asker"], f"/api/v1/tasks/{prompt_task['id']}/submit/", {"text": "Explain entropy."})
    label(clients["rev"], "label_initial_prompt")
    replies = {}
    for name in ("ann", "ben", "cid"):
        t = task(clients[name], "assistant_reply")
        replies[name] = post(clients[name], f"/api/v1/tasks/{t['id']}/submit/", {"text": f"Entropy, says {name}."})
    for _ in replies:
        label(clients["rev"], "label_assistant_reply")
    return users, clients, prompt, {name: r["id"] for name, r in replies.items()}


def test_consensus_of_a_tree_ranked_through_the_api_matches_the_hand_computed_one(three_replies):
    users, clients, prompt, ids = three_replies
    a, b, c = ids["ann"], ids["ben"], ids["cid"]
    orders = {"r1": [a, b, c], "r2": [b, a, c], "r3": [a, c, b]}
    for ranker, order in orders.items():
        t = task(clients[ranker], "rank_assistant_replies")
        post(clients[ranker], f"/api/v1/tasks/{t['id']}/submit/", {"ranking": order})
    tree = clients["asker"].get(f"/api/v1/messages/{prompt['id']}/tree/").json()
    assert tree["tree_state"] == "ready_for_export"
    # a>b 2:1, a>c 3:0, b>c 2:1: the consensus is a, b, c
    assert [(n["message_id"], n["rank"]) for n in tree["prompt"]["replies"]] == [(a, 0), (b, 1), (c, 2)]
    result = RankingResult.objects.get(parent_id=prompt["id"])
    assert result.consensus == [a, b, c] and result.rankings == 3
    assert result.agreement == pytest.approx(4 / 9)  # Kendall's W: rank sums 4, 6, 8; S = 8; 12 * 8 / (9 * 24)
    taus = dict(Ranking.objects.values_list("user__username", "agreement"))
    assert taus == {"r1": 1.0, "r2": pytest.approx(1 / 3), "r3": pytest.approx(1 / 3)}
    events = set(ContributionEvent.objects.filter(kind__in=["good_ranking", "ranked_1st", "ranked_2nd", "ranked_3rd"])
                 .values_list("user__username", "kind"))
    assert events == {("r1", "good_ranking"), ("ann", "ranked_1st"), ("ben", "ranked_2nd"), ("cid", "ranked_3rd")}


def test_points_and_leaderboard_move_with_contributions_through_the_api(three_replies):
    users, clients, prompt, ids = three_replies
    me = clients["ann"].get("/api/v1/users/me/").json()
    # ann wrote an assistant reply (4) that was accepted (4): 8 points, level 2 (>= 4 points)
    assert me["frames"]["total"]["score"] == 8
    assert me["frames"]["total"]["breakdown"] == {"assistant_reply": 4, "accepted_assistant_reply": 4}
    assert me["frames"]["day"]["score"] == 8 and me["level"] == 2 and me["streak"] == 1
    rev = clients["rev"].get("/api/v1/users/me/").json()
    assert rev["frames"]["total"]["breakdown"] == {"simple_label": 4}
    # ann, ben, cid and rev have points; the asker's prompt is worth a tenth of a point, rounded down
    assert leaderboard_rebuild_job.delay("total").get() == 4
    board = clients["ann"].get("/api/v1/leaderboard/total/").json()
    assert [(e["display_name"], e["score"]) for e in board["results"][:1]] == [("Ann", 8)]
    assert board["me"]["rank"] in (1, 2, 3) and board["me"]["score"] == 8
    a, b, c = ids["ann"], ids["ben"], ids["cid"]
    for ranker in ("r1", "r2", "r3"):
        t = task(clients[ranker], "rank_assistant_replies")
        post(clients[ranker], f"/api/v1/tasks/{t['id']}/submit/", {"ranking": [a, b, c]})
    me = clients["ann"].get("/api/v1/users/me/").json()
    assert me["frames"]["total"]["score"] == 8 + 9  # ranked first
    leaderboard_rebuild_job.delay("total").get()
    board = clients["ben"].get("/api/v1/leaderboard/total/").json()
    assert board["results"][0]["display_name"] == "Ann" and board["results"][0]["score"] == 17
    assert clients["ann"].get("/api/v1/users/me/").json()["frames"]["total"]["rank"] == 1


def test_rebuilding_twice_changes_nothing_and_hidden_or_banned_users_are_not_ranked():
    now = timezone.now()
    people = [UserFactory() for _ in range(4)]
    for points, user in zip((3, 2, 5, 1), people, strict=True):
        ContributionEvent.objects.bulk_create([ContributionEvent(user=user, kind="ranking", created_at=now)] * points)
    people[2].show_on_leaderboard = False
    people[2].save()
    people[3].is_banned = True
    people[3].save()
    assert services.leaderboard_rebuild(frame="total", now=now) == 2
    first = list(LeaderboardEntry.objects.filter(frame="total").order_by("rank").values_list("rank", "user", "score"))
    services.leaderboard_rebuild(frame="total", now=now)
    assert list(LeaderboardEntry.objects.filter(frame="total").order_by("rank")
                .values_list("rank", "user", "score")) == first == [(1, people[0].pk, 3), (2, people[1].pk, 2)]


def test_time_frames_count_from_a_fixed_clock():
    now = timezone.now()
    user = UserFactory()
    ages = [timedelta(hours=23), timedelta(hours=25), timedelta(days=6), timedelta(days=8), timedelta(days=29),
            timedelta(days=31)]
    ContributionEvent.objects.bulk_create([ContributionEvent(user=user, kind="ranking", created_at=now - age)
                                           for age in ages])
    scores = services.user_scores_refresh(user=user, now=now)
    assert {frame: s.score for frame, s in scores.items()} == {"day": 1, "week": 3, "month": 5, "total": 6}
    for frame, expected in (("day", 1), ("week", 3), ("month", 5), ("total", 6)):
        services.leaderboard_rebuild(frame=frame, now=now)
        assert LeaderboardEntry.objects.get(frame=frame, user=user).score == expected


def test_leaderboard_window_around_the_user_and_pages():
    now = timezone.now()
    people = [UserFactory() for _ in range(60)]
    ContributionEvent.objects.bulk_create([ContributionEvent(user=user, kind="ranking", created_at=now)
                                           for i, user in enumerate(people) for _ in range(i + 1)])
    services.leaderboard_rebuild(frame="week", now=now)
    client = token_client(people[30])  # 31 points: rank 30
    board = client.get("/api/v1/leaderboard/week/").json()
    assert len(board["results"]) == 50 and board["has_next"] is True
    assert board["me"]["rank"] == 30
    assert [e["rank"] for e in board["around_me"]] == list(range(25, 36))
    page2 = client.get("/api/v1/leaderboard/week/?page=2").json()
    assert [e["rank"] for e in page2["results"]] == list(range(51, 61)) and page2["has_next"] is False
    assert client.get("/api/v1/leaderboard/year/").json()["code"] == "not_found"


def test_trollboard_is_for_moderators_only(three_replies):
    users, clients, prompt, ids = three_replies
    from tasks import services as task_services

    for name in ("r1", "r2"):
        task_services.emoji_set(user=users[name], message_id=ids["ben"], emoji="red_flag", op="add")
    for name in ("r1", "r2", "r3"):
        task_services.emoji_set(user=users[name], message_id=ids["ben"], emoji="-1", op="add")
    assert clients["rev"].get("/api/v1/trollboard/total/").status_code == 403
    users["rev"].user_permissions.add(Permission.objects.get(codename="view_trollboard"))
    board = clients["rev"].get("/api/v1/trollboard/total/").json()
    assert board[0]["username"] == "ben" and board[0]["troll_score"] == 2 * 3 + 3
    assert MessageTree.objects.count() == 1


def test_not_rankable_counts_are_shown_to_moderators_in_admin(client, three_replies):
    users, clients, prompt, ids = three_replies
    for ranker in ("r1", "r2", "r3"):
        t = task(clients[ranker], "rank_assistant_replies")
        post(clients[ranker], f"/api/v1/tasks/{t['id']}/submit/", {"not_rankable": True})
    result = RankingResult.objects.get(parent_id=prompt["id"])
    assert (result.rankings, result.not_rankable, result.consensus) == (0, 3, [])
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    page = client.get("/admin/ranking/rankingresult/")
    assert page.status_code == 200 and prompt["id"] in page.content.decode()
