"""Moderators see what the model sees: the message admin's score filter and sort, the lowest-scored recent
replies and the model/people disagreements (tasks.admin_scores, tasks.score_selectors)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tasks import score_selectors, services
from tasks.models import Message
from tests.factories import UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

pytestmark = pytest.mark.django_db

LOWEST = "/admin/tasks/message/lowest-scored/"
DISAGREE = "/admin/tasks/message/disagreements/"


def scored_family(prompt_text: str, replies: list[tuple[str, int | None, float | None]]) -> list[Message]:
    """A prompt with accepted assistant replies, each given (text, consensus rank, reward score)."""
    prompt = write_prompt(UserFactory(), text=prompt_text)
    review_of(UserFactory(), prompt)
    services.lottery_activate(lang="en")
    made = []
    for text, rank, score in replies:
        message = reply_to(UserFactory(), prompt, text)
        review_of(UserFactory(), message)
        Message.objects.filter(pk=message.pk).update(rank=rank, reward_score=score)
        made.append(Message.objects.get(pk=message.pk))
    return made


@pytest.fixture
def scored(tree_settings):
    """Two sets of sibling replies: one where the model agrees with the people, one where it reverses them;
    and an unscored reply."""
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1, goal_tree_size=10, max_active_trees=5)
    agree = scored_family("Name a fruit.", [("Apple.", 0, 2.5), ("Banana, I think.", 1, 0.3), ("Rock.", 2, -2.0)])
    reverse = scored_family("Explain rain.", [("Water falls from clouds.", 0, -1.5),
                                              ("Clouds get heavy.", 1, 0.0), ("Dunno lol", 2, 1.2)])
    unscored = scored_family("Say hi.", [("Hi!", None, None)])
    return agree, reverse, unscored


def test_the_score_filter_bands(admin_client, scored):
    agree, reverse, unscored = scored
    expected = {"unscored": {unscored[0].pk}, "low": {agree[2].pk, reverse[0].pk},
                "middle": {agree[1].pk, reverse[1].pk}, "high": {agree[0].pk, reverse[2].pk}}
    for band, ids in expected.items():
        response = admin_client.get(f"/admin/tasks/message/?score={band}&role__exact=assistant")
        assert {m.pk for m in response.context["cl"].result_list} == ids, band


def test_the_message_list_sorts_by_score(admin_client, scored):
    column = list(admin_client.get("/admin/tasks/message/").context["cl"].list_display).index("reward_score")
    response = admin_client.get(f"/admin/tasks/message/?o={column}&score=high")
    assert [m.reward_score for m in response.context["cl"].result_list] == [1.2, 2.5]
    response = admin_client.get(f"/admin/tasks/message/?o=-{column}&score=low")
    assert [m.reward_score for m in response.context["cl"].result_list] == [-1.5, -2.0]


def test_lowest_scored_recent_replies(client, moderator, scored):
    agree, reverse, _ = scored
    Message.objects.filter(pk=agree[2].pk).update(created_at=timezone.now() - timedelta(days=10))
    client.force_login(moderator)
    page = client.get(LOWEST)
    assert [m.pk for m in page.context["replies"]] == [reverse[0].pk, reverse[1].pk, agree[1].pk,
                                                       reverse[2].pk, agree[0].pk]
    assert f"/admin/tasks/message/{reverse[0].pk}/change/" in page.content.decode()
    month = client.get(LOWEST + "?days=30")
    assert month.context["replies"][0].pk == agree[2].pk
    assert client.get(LOWEST + "?days=oops").context["days"] == 7


def test_disagreements_list_the_reversed_siblings_with_their_tau(client, moderator, scored):
    agree, reverse, _ = scored
    client.force_login(moderator)
    page = client.get(DISAGREE)
    [entry] = page.context["entries"]
    assert entry["tau"] == -1.0 and entry["size"] == 3 and entry["people_first_is_model_last"]
    assert entry["people_first"]["id"] == reverse[0].pk and entry["model_first"]["id"] == reverse[2].pk
    html = page.content.decode()
    assert f"/admin/tasks/message/{reverse[0].pk}/change/" in html and "Dunno lol" in html
    # A lower bar lists only the strong ones; a mild disagreement shows at 0 but not at -0.5.
    Message.objects.filter(pk=agree[1].pk).update(reward_score=3.0)  # model: Banana > Apple > Rock, tau 1/3
    Message.objects.filter(pk=agree[2].pk).update(reward_score=2.6)  # model: Banana > Rock > Apple, tau -1/3
    assert [e["parent_id"] for e in client.get(DISAGREE + "?max_tau=0.0").context["entries"]] == [
        reverse[0].parent_id, agree[0].parent_id]
    assert [e["parent_id"] for e in client.get(DISAGREE + "?max_tau=-0.5").context["entries"]] == [
        reverse[0].parent_id]


def test_the_pages_change_nothing_and_run_a_fixed_number_of_queries(client, moderator, scored,
                                                                     django_assert_num_queries):
    client.force_login(moderator)
    before = list(Message.objects.order_by("pk").values_list("pk", "reward_score", "rank", "deleted"))
    # The session, the user, their own and their groups' permissions, then one read, however many rows.
    with django_assert_num_queries(5):
        assert client.get(LOWEST).status_code == 200
    with django_assert_num_queries(5):
        assert client.get(DISAGREE).status_code == 200
    scored_family("Count to two.", [("One, two.", 0, -3.0), ("Two.", 1, 3.0)])
    with django_assert_num_queries(5):
        client.get(LOWEST)
    with django_assert_num_queries(5):
        client.get(DISAGREE)
    assert list(Message.objects.filter(pk__in=[row[0] for row in before]).order_by("pk")
                .values_list("pk", "reward_score", "rank", "deleted")) == before


def test_contributors_and_staff_without_permission_are_refused(client, scored):
    contributor = UserFactory()
    client.force_login(contributor)
    for url in (LOWEST, DISAGREE):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(UserFactory(is_staff=True))
    for url in (LOWEST, DISAGREE):
        assert client.get(url).status_code == 403


def test_sibling_score_gaps_leave_unscored_parents_out(scored):
    agree, reverse, unscored = scored
    parents = [agree[0].parent_id, reverse[0].parent_id, unscored[0].parent_id]
    assert score_selectors.model_doubts(parents, with_disagreement=False) == {}  # no model in service: none count
    Message.objects.filter(reward_score__isnull=False).update(reward_run_id=7)
    services.serving_scorer_set(run_id=7)
    gaps = {parent: gap for parent, (gap, _) in score_selectors.model_doubts(parents, with_disagreement=False).items()}
    assert gaps == {agree[0].parent_id: pytest.approx(2.2), reverse[0].parent_id: pytest.approx(1.2)}
