"""Services beyond submissions: expiry, lottery, scoring jobs, reactions, reports, auto-moderation."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from oasst.errors import NotFound
from tasks import services
from tasks.jobs import lottery_activate_job, tasks_expire_job
from tasks.models import FlaggedMessage, Message, MessageTree, Task, TreeState
from tasks.scoring import scoring_retry_job, tree_score_job
from tests.conftest import token_client
from tests.factories import UserFactory
from tests.tasks.builders import reply, review, write_prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(small_trees):
    return [UserFactory() for _ in range(6)]


@pytest.fixture
def growing_prompt(people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        prompt = write_prompt(people[0])
        review(people[1], "label_initial_prompt")
    prompt.refresh_from_db()
    return prompt


def test_expired_tasks_release_their_slot_and_the_item_is_offered_again(people, tree_settings):
    tree_settings(num_reviews_initial_prompt=1)
    prompt = write_prompt(people[0])
    task = services.task_request(user=people[1], task_type="label_initial_prompt", lang="en")
    with pytest.raises(NotFound):
        services.task_request(user=people[2], task_type="label_initial_prompt", lang="en")
    Task.objects.filter(pk=task.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert tasks_expire_job.delay().get() == 1
    prompt.refresh_from_db()
    assert prompt.reviews_pending == 0
    assert Task.objects.get(pk=task.pk).expired
    again = services.task_request(user=people[2], task_type="label_initial_prompt", lang="en")
    assert again.item_id == prompt.pk
    assert tasks_expire_job.delay().get() == 0


def test_expired_reply_task_frees_the_tree_and_parent_slots(people, growing_prompt):
    task = services.task_request(user=people[2], task_type="assistant_reply", lang="en")
    tree = MessageTree.objects.get(pk=growing_prompt.tree_id)
    assert tree.replies_pending == 1
    services.tasks_expire(now=timezone.now() + timedelta(days=3))
    tree.refresh_from_db()
    growing_prompt.refresh_from_db()
    assert tree.replies_pending == 0 and growing_prompt.replies_pending == 0
    assert Task.objects.get(pk=task.pk).expired
    assert tree.reply_skip_count == 0  # an expiry is not a skip


def test_skipping_a_reply_task_counts_toward_halting_the_tree(people, tree_settings, growing_prompt):
    tree_settings(auto_mod_max_skip_reply=2)
    for user in people[2:4]:
        task = services.task_request(user=user, task_type="assistant_reply", lang="en")
        services.task_nack(user=user, task_id=task.pk, reason="too hard")
    tree = MessageTree.objects.get(pk=growing_prompt.tree_id)
    assert tree.state == TreeState.HALTED_BY_MODERATOR and tree.halted_from_state == TreeState.GROWING
    with pytest.raises(NotFound):
        services.task_request(user=people[4], task_type="assistant_reply", lang="en")
    services.tree_resume(tree_id=tree.pk)
    assert services.task_request(user=people[4], task_type="assistant_reply", lang="en")


def test_skipped_item_is_not_offered_to_the_same_user_again(people, growing_prompt):
    task = services.task_request(user=people[2], task_type="assistant_reply", lang="en")
    services.task_nack(user=people[2], task_id=task.pk, reason="")
    with pytest.raises(NotFound):
        services.task_request(user=people[2], task_type="assistant_reply", lang="en")
    assert services.task_request(user=people[3], task_type="assistant_reply", lang="en").item_id == growing_prompt.pk


def test_lottery_keeps_at_most_max_active_trees_growing(people, tree_settings, django_capture_on_commit_callbacks):
    tree_settings(max_active_trees=1, num_reviews_initial_prompt=1)
    with django_capture_on_commit_callbacks(execute=True):
        first = write_prompt(people[0], text="First prompt?")
        second = write_prompt(people[1], text="Second prompt?")
        review(people[2], "label_initial_prompt")
        review(people[2], "label_initial_prompt")
    states = dict(MessageTree.objects.values_list("pk", "state"))
    assert sorted(states.values()) == [TreeState.GROWING, TreeState.PROMPT_LOTTERY_WAITING]
    growing = MessageTree.objects.get(state=TreeState.GROWING)
    services.tree_halt(tree_id=growing.pk)
    assert lottery_activate_job.delay().get() == 1
    assert MessageTree.objects.filter(state=TreeState.GROWING).count() == 1
    assert {first.tree_id, second.tree_id} == set(states)


def test_rejected_prompt_aborts_its_tree(people):
    prompt = write_prompt(people[0])
    review(people[1], "label_initial_prompt", values={"spam": 1, "lang_mismatch": 0})
    tree = MessageTree.objects.get(pk=prompt.tree_id)
    assert tree.state == TreeState.ABORTED_LOW_GRADE


def test_rejected_reply_frees_its_slot_and_gets_no_children(people, growing_prompt, tree_settings):
    tree_settings(max_children_count=1)
    bad = reply(people[2], "Buy cheap watches at example.com")
    review(people[3], "label_assistant_reply", values={"spam": 1, "lang_mismatch": 0})
    bad.refresh_from_db()
    growing_prompt.refresh_from_db()
    assert bad.review_result is False and growing_prompt.children_count == 0
    again = services.task_request(user=people[4], task_type="assistant_reply", lang="en")
    assert again.item_id == growing_prompt.pk


@pytest.fixture
def two_accepted_replies(people, growing_prompt, django_capture_on_commit_callbacks):
    """The prompt with two accepted replies: with the small settings, its tree is being ranked."""
    with django_capture_on_commit_callbacks(execute=True):
        reply(people[2], "Answer one.")
        reply(people[3], "Answer two.")
        review(people[4], "label_assistant_reply")
        review(people[4], "label_assistant_reply")
    return growing_prompt


def test_scoring_failure_moves_the_tree_to_scoring_failed_and_the_retry_job_scores_it(
        people, growing_prompt, two_accepted_replies, django_capture_on_commit_callbacks):
    task = services.task_request(user=people[5], task_type="rank_assistant_replies", lang="en")
    with mock.patch("ranking.consensus.ranked_pairs", side_effect=RuntimeError("boom")):
        with django_capture_on_commit_callbacks(execute=True):
            services.ranking_submit(user=people[5], task_id=task.pk,
                                    ranking=[m["id"] for m in task.payload["reply_messages"]])
    tree = MessageTree.objects.get(pk=growing_prompt.tree_id)
    assert tree.state == TreeState.SCORING_FAILED
    assert scoring_retry_job.delay().get() == 1
    tree.refresh_from_db()
    assert tree.state == TreeState.READY_FOR_EXPORT
    ranks = sorted(Message.objects.filter(parent=growing_prompt).values_list("rank", flat=True))
    assert ranks == [0, 1]
    assert tree_score_job.delay(str(tree.pk)).get() == TreeState.READY_FOR_EXPORT  # idempotent


def test_not_rankable_rankings_are_counted_but_leave_replies_unranked(
        people, growing_prompt, two_accepted_replies, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        task = services.task_request(user=people[5], task_type="rank_assistant_replies", lang="en")
        services.ranking_submit(user=people[5], task_id=task.pk, not_rankable=True)
    assert MessageTree.objects.get(pk=growing_prompt.tree_id).state == TreeState.READY_FOR_EXPORT
    assert set(Message.objects.filter(parent=growing_prompt).values_list("rank", flat=True)) == {None}


def test_plus_one_and_minus_one_exclude_each_other(people, growing_prompt):
    client = token_client(people[1])
    url = f"/api/v1/messages/{growing_prompt.pk}/emoji/"
    assert client.post(url, {"emoji": "+1", "op": "add"}).json() == {"emojis": {"+1": 1}}
    assert client.post(url, {"emoji": "heart_eyes", "op": "add"}).json() == {"emojis": {"+1": 1, "heart_eyes": 1}}
    assert client.post(url, {"emoji": "-1", "op": "add"}).json() == {"emojis": {"-1": 1, "heart_eyes": 1}}
    assert client.post(url, {"emoji": "-1", "op": "add"}).json() == {"emojis": {"-1": 1, "heart_eyes": 1}}
    assert client.post(url, {"emoji": "heart_eyes", "op": "remove"}).json() == {"emojis": {"-1": 1}}
    assert token_client(people[2]).post(url, {"emoji": "-1"}).json() == {"emojis": {"-1": 2}}


def test_red_flags_abort_a_prompt_tree(people, tree_settings, growing_prompt):
    tree_settings(auto_mod_red_flags=2)
    for user in people[1:3]:
        services.emoji_set(user=user, message_id=growing_prompt.pk, emoji="red_flag", op="add")
    assert MessageTree.objects.get(pk=growing_prompt.tree_id).state == TreeState.ABORTED_LOW_GRADE
    flag = FlaggedMessage.objects.get(message=growing_prompt)
    assert flag.reports == 2 and not flag.processed


def test_red_flags_delete_a_reply_with_its_subtree(people, tree_settings, growing_prompt):
    tree_settings(auto_mod_red_flags=2, goal_tree_size=6)
    answer = reply(people[2], "An answer.")
    review(people[3], "label_assistant_reply")
    follow_up = reply(people[4], "Thanks, and why?", task_type="prompter_reply")
    tree = MessageTree.objects.get(pk=growing_prompt.tree_id)
    assert tree.message_count == 3
    for user in (people[1], people[5]):
        services.emoji_set(user=user, message_id=answer.pk, emoji="red_flag", op="add")
    assert set(Message.objects.filter(pk__in=[answer.pk, follow_up.pk]).values_list("deleted", flat=True)) == {True}
    tree.refresh_from_db()
    growing_prompt.refresh_from_db()
    assert (tree.message_count, tree.accepted_count, tree.awaiting_review) == (1, 1, 0)
    assert growing_prompt.children_count == 0
    assert token_client(people[1]).get(f"/api/v1/messages/{answer.pk}/").status_code == 404


def test_report_enters_the_flagged_queue(people, growing_prompt):
    client = token_client(people[1])
    response = client.post(f"/api/v1/messages/{growing_prompt.pk}/report/", {"reason": "personal data"})
    assert response.status_code == 201 and response.json()["reports"] == 1
    client2 = token_client(people[2])
    assert client2.post(f"/api/v1/messages/{growing_prompt.pk}/report/", {"reason": "rude"}).json()["reports"] == 2
    assert FlaggedMessage.objects.get().reasons == ["personal data", "rude"]


def test_review_with_report_enters_the_flagged_queue(people):
    prompt = write_prompt(people[0])
    task = services.task_request(user=people[1], task_type="label_initial_prompt", lang="en")
    services.labels_submit(user=people[1], task_id=task.pk, labels={"spam": 0}, text="contains a phone number",
                           report=True)
    assert FlaggedMessage.objects.get(message=prompt).reasons == ["contains a phone number"]


def test_available_counts_per_task_type(people, growing_prompt):
    client = token_client(people[2])
    counts = client.get("/api/v1/tasks/available/?lang=en").json()
    assert counts["assistant_reply"] == 1 and counts["initial_prompt"] == 1
    assert counts["label_initial_prompt"] == 0 and counts["rank_assistant_replies"] == 0
    assert token_client(people[0]).get("/api/v1/tasks/available/?lang=en").json()["assistant_reply"] == 0
    assert client.get("/api/v1/tasks/available/?lang=de").json()["assistant_reply"] == 0
    assert client.get("/api/v1/tasks/available/?lang=xx").json()["code"] == "invalid_language"


def test_message_and_tree_endpoints(people, growing_prompt):
    client = token_client(people[1])
    message = client.get(f"/api/v1/messages/{growing_prompt.pk}/").json()
    assert message["review_result"] == "accepted" and message["is_own"] is False
    assert token_client(people[0]).get(f"/api/v1/messages/{growing_prompt.pk}/").json()["is_own"] is True
    tree = client.get(f"/api/v1/messages/{growing_prompt.pk}/tree/").json()
    assert tree["prompt"]["message_id"] == str(growing_prompt.pk) and tree["prompt"]["replies"] == []
    assert "user_id" in tree["prompt"]
    assert client.get("/api/v1/messages/00000000-0000-0000-0000-000000000000/").json()["code"] == "message_not_found"


def test_tasks_in_another_language_are_not_offered(people, growing_prompt):
    with pytest.raises(NotFound):
        services.task_request(user=people[2], task_type="assistant_reply", lang="de")


def test_a_tree_keeps_the_child_limit_it_was_created_with(people, tree_settings, django_capture_on_commit_callbacks):
    tree_settings(max_children_count=3, goal_tree_size=12)
    with django_capture_on_commit_callbacks(execute=True):
        prompt = write_prompt(people[0])
        review(people[1], "label_initial_prompt")
    reply(people[2], "Answer one.")
    reply(people[3], "Answer two.")
    tree_settings(max_children_count=2)  # lowered later: the existing tree still takes a third reply
    client = token_client(people[4])
    assert client.get("/api/v1/tasks/available/?lang=en").json()["assistant_reply"] == 1
    task = services.task_request(user=people[4], task_type="assistant_reply", lang="en")
    assert task.item_id == prompt.pk
