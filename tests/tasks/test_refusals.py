"""Every refusal of SPEC's submission rules: a 4xx with a code, and the database unchanged."""

import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from tasks.models import Message, Task, TaskType
from tests.conftest import token_client
from tests.factories import UserFactory
from tests.tasks.builders import GOOD_LABELS, open_task, reply, review, write_prompt

TABLES = ["tasks.MessageTree", "tasks.Message", "tasks.Task", "tasks.Review", "tasks.EmojiReaction",
          "tasks.FlaggedMessage", "ranking.Ranking"]


def snapshot() -> dict:
    """Row counts and the mutable state of every task and message."""
    state = {label: apps.get_model(label).objects.count() for label in TABLES}
    state["tasks"] = sorted(Task.objects.values_list("pk", "done", "skipped", "expired", "acked_at"))
    state["messages"] = sorted(Message.objects.values_list(
        "pk", "text", "review_count", "reviews_pending", "children_count", "replies_pending", "ranking_count",
        "rankings_pending", "review_result", "emojis"))
    return state


def refused(client, path, body, status, code):
    before = snapshot()
    response = client.post(path, body, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code, response.json()
    assert response.json()["detail"]
    assert snapshot() == before, "a refused request changed the database"
    return response.json()


@pytest.fixture
def people(db, small_trees):
    return {name: UserFactory(username=name) for name in ("alice", "bob", "carol", "dave")}


@pytest.fixture
def growing_prompt(people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        prompt = write_prompt(people["alice"])
        review(people["bob"], "label_initial_prompt")
    prompt.tree.refresh_from_db()
    assert prompt.tree.state == "growing"
    return prompt


def submit_path(task):
    return f"/api/v1/tasks/{task.pk}/submit/"


@pytest.mark.parametrize("text, code", [("", "empty_text"), ("   \n ", "empty_text"), ("x" * 2001, "text_too_long")])
def test_empty_or_too_long_text_is_refused(people, text, code):
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    refused(token_client(people["alice"]), submit_path(task), {"text": text}, 400, code)


def test_same_text_from_same_user_within_two_hours_is_refused(people):
    write_prompt(people["alice"], text="Why is the sky blue?")
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    refused(token_client(people["alice"]), submit_path(task), {"text": "  Why is the sky blue? "}, 409,
            "duplicate_text")


def test_same_text_after_the_window_is_accepted(people):
    old = write_prompt(people["alice"], text="Why is the sky blue?")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=121))
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    response = token_client(people["alice"]).post(submit_path(task), {"text": "Why is the sky blue?"})
    assert response.status_code == 201


def test_second_reply_to_same_parent_is_refused(people, growing_prompt):
    reply(people["bob"], "First answer.")
    task = open_task(people["bob"], TaskType.ASSISTANT_REPLY, growing_prompt)
    refused(token_client(people["bob"]), submit_path(task), {"text": "Second answer."}, 409, "already_replied")


def test_review_of_own_message_is_refused(people, growing_prompt):
    own = reply(people["bob"], "An answer.")
    task = open_task(people["bob"], TaskType.LABEL_ASSISTANT_REPLY, own, valid_labels=["spam", "lang_mismatch"],
                     mandatory_labels=["spam"], mode="simple")
    refused(token_client(people["bob"]), submit_path(task), {"labels": GOOD_LABELS}, 403, "own_message")


def test_second_review_of_same_message_is_refused(people, tree_settings, growing_prompt):
    tree_settings(num_reviews_reply=3)
    answer = reply(people["bob"], "An answer.")
    review(people["carol"], "label_assistant_reply")
    task = open_task(people["carol"], TaskType.LABEL_ASSISTANT_REPLY, answer,
                     valid_labels=["spam", "lang_mismatch"], mandatory_labels=["spam"], mode="simple")
    refused(token_client(people["carol"]), submit_path(task), {"labels": GOOD_LABELS}, 409, "already_reviewed")


@pytest.fixture
def rank_task(people, growing_prompt, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = reply(people["bob"], "Answer one.")
        second = reply(people["carol"], "Answer two.")
        review(people["dave"], "label_assistant_reply")
        review(people["dave"], "label_assistant_reply")
    from tasks import services

    task = services.task_request(user=people["dave"], task_type="rank_assistant_replies", lang="en")
    return task, [str(first.pk), str(second.pk)]


@pytest.mark.parametrize("make_ranking", [
    lambda ids: ids[:1],                    # one missing
    lambda ids: ids + ids[:1],              # one twice
    lambda ids: ids[:1] * 2,                # duplicate instead of the other
    lambda ids: ids + ["00000000-0000-0000-0000-000000000000"],  # an id not offered
    lambda ids: [],                         # empty
])
def test_ranking_that_is_not_a_permutation_of_the_offered_replies_is_refused(people, rank_task, make_ranking):
    task, ids = rank_task
    refused(token_client(people["dave"]), submit_path(task), {"ranking": make_ranking(ids)}, 400, "invalid_ranking")


def test_ranking_and_not_rankable_together_are_refused(people, rank_task):
    task, ids = rank_task
    refused(token_client(people["dave"]), submit_path(task), {"ranking": ids, "not_rankable": True}, 400,
            "invalid_ranking")


def test_ranking_a_set_holding_ones_own_reply_is_refused(people, rank_task):
    task, ids = rank_task
    own = Task.objects.create(type=task.type, user=people["bob"], lang="en", item=task.item, tree=task.tree,
                              payload=task.payload, expires_at=task.expires_at)
    refused(token_client(people["bob"]), submit_path(own), {"ranking": ids}, 403, "own_message")


def test_submission_for_an_expired_task_is_refused(people):
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    Task.objects.filter(pk=task.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused(token_client(people["alice"]), submit_path(task), {"text": "Hello there"}, 409, "task_expired")


def test_submission_for_a_skipped_task_is_refused(people):
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    client = token_client(people["alice"])
    assert client.post(f"/api/v1/tasks/{task.pk}/nack/", {"reason": "no idea"}).status_code == 200
    refused(client, submit_path(task), {"text": "Hello there"}, 409, "task_skipped")
    refused(client, f"/api/v1/tasks/{task.pk}/nack/", {}, 409, "task_skipped")


def test_submission_for_another_users_task_is_refused_without_disclosing_it(people):
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    client = token_client(people["bob"])
    refused(client, submit_path(task), {"text": "Hello there"}, 404, "task_not_found")
    refused(client, f"/api/v1/tasks/{task.pk}/ack/", {}, 404, "task_not_found")
    assert client.get(f"/api/v1/tasks/{task.pk}/").status_code == 404


def test_ack_refuses_what_is_not_an_open_task_of_the_users_and_keeps_the_first_ack(people):
    """The ack is one UPDATE on the usual path; each refusal still names its reason and changes nothing."""
    alice = token_client(people["alice"])
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    first = alice.post(f"/api/v1/tasks/{task.pk}/ack/")
    assert first.status_code == 200 and first.json()["acked_at"] and first.json()["id"] == str(task.pk)
    again = alice.post(f"/api/v1/tasks/{task.pk}/ack/")
    assert again.status_code == 200 and again.json()["acked_at"] == first.json()["acked_at"]
    for path in (f"/api/v1/tasks/{uuid.uuid4()}/ack/", "/api/v1/tasks/not-a-uuid/ack/"):
        assert alice.post(path).status_code == 404
    refused(token_client(people["bob"]), f"/api/v1/tasks/{task.pk}/ack/", {}, 404, "task_not_found")
    Task.objects.filter(pk=task.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused(alice, f"/api/v1/tasks/{task.pk}/ack/", {}, 409, "task_expired")
    for field, code in (("expired", "task_expired"), ("skipped", "task_skipped"), ("done", "task_done")):
        fresh = open_task(people["carol"], TaskType.INITIAL_PROMPT, None)
        Task.objects.filter(pk=fresh.pk).update(**{field: True})
        refused(token_client(people["carol"]), f"/api/v1/tasks/{fresh.pk}/ack/", {}, 409, code)
        assert Task.objects.get(pk=fresh.pk).acked_at is None


def test_submission_for_a_done_task_is_refused(people):
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    client = token_client(people["alice"])
    assert client.post(submit_path(task), {"text": "Hello there"}).status_code == 201
    refused(client, submit_path(task), {"text": "Something else"}, 409, "task_done")


def test_retried_submission_with_the_same_client_id_returns_the_same_message(people):
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    client = token_client(people["alice"])
    first = client.post(submit_path(task), {"text": "Hello there", "client_id": "draft-7"})
    before = snapshot()
    again = client.post(submit_path(task), {"text": "Hello there", "client_id": "draft-7"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert snapshot() == before
    assert Message.objects.count() == 1


def test_client_id_reused_for_another_message_is_refused(people):
    client = token_client(people["alice"])
    client.post(submit_path(open_task(people["alice"], TaskType.INITIAL_PROMPT, None)),
                {"text": "Hello there", "client_id": "draft-7"})
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    refused(client, submit_path(task), {"text": "A new prompt", "client_id": "draft-7"}, 409, "duplicate_client_id")


def test_labels_sent_to_a_text_task_are_refused(people):
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    refused(token_client(people["alice"]), submit_path(task), {"labels": GOOD_LABELS}, 400, "empty_text")


@pytest.mark.parametrize("labels, code", [
    ({"lang_mismatch": 0}, "missing_labels"),
    ({"spam": 0, "humor": 0.5}, "invalid_labels"),
    ({"spam": 0.5}, "invalid_label_value"),
    ({"spam": 0, "quality": 0.3}, "invalid_label_value"),
    ({"spam": 0, "quality": 2}, "invalid_label_value"),
])
def test_invalid_labels_are_refused(people, growing_prompt, labels, code):
    answer = reply(people["bob"], "An answer.")
    task = open_task(people["carol"], TaskType.LABEL_ASSISTANT_REPLY, answer,
                     valid_labels=["spam", "lang_mismatch", "quality"], mandatory_labels=["spam"], mode="simple")
    refused(token_client(people["carol"]), submit_path(task), {"labels": labels}, 400, code)


def test_text_sent_to_a_label_task_is_refused(people, growing_prompt):
    answer = reply(people["bob"], "An answer.")
    task = open_task(people["carol"], TaskType.LABEL_ASSISTANT_REPLY, answer,
                     valid_labels=["spam"], mandatory_labels=["spam"], mode="simple")
    refused(token_client(people["carol"]), submit_path(task), {"text": "great"}, 400, "invalid_labels")


def test_banned_user_gets_no_task_and_cannot_submit(people):
    task = open_task(people["alice"], TaskType.INITIAL_PROMPT, None)
    people["alice"].is_banned = True
    people["alice"].save()
    client = token_client(people["alice"])
    refused(client, "/api/v1/tasks/", {"type": "random", "lang": "en"}, 403, "banned")
    refused(client, submit_path(task), {"text": "Hello there"}, 403, "banned")


def test_user_without_accepted_terms_gets_403_until_accepting(db, small_trees):
    newcomer = UserFactory(tos_accepted_at=None)
    client = token_client(newcomer)
    refused(client, "/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}, 403, "tos_not_accepted")
    assert client.get("/api/v1/tasks/available/?lang=en").json()["code"] == "tos_not_accepted"
    assert client.post("/api/v1/users/me/accept-tos/").json()["tos_accepted"] is True
    assert client.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).status_code == 201


def test_ninth_pending_task_within_five_minutes_is_refused(people):
    client = token_client(people["alice"])
    for _ in range(8):
        assert client.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).status_code == 201
    refused(client, "/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}, 429, "too_many_pending_tasks")


def test_pending_tasks_older_than_the_window_do_not_count(people):
    client = token_client(people["alice"])
    for _ in range(8):
        client.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"})
    Task.objects.update(created_at=timezone.now() - timedelta(minutes=6))
    assert client.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).status_code == 201


@pytest.mark.parametrize("body, code", [
    ({"type": "make_coffee", "lang": "en"}, "invalid"),
    ({"type": "random", "lang": "xx"}, "invalid"),
    ({"type": "rank_prompter_replies", "lang": "en"}, "invalid_task_type"),
])
def test_unknown_task_type_or_language_is_refused(people, body, code):
    refused(token_client(people["alice"]), "/api/v1/tasks/", body, 400, code)


def test_no_task_is_a_404_with_its_code(people):
    refused(token_client(people["alice"]), "/api/v1/tasks/", {"type": "label_initial_prompt", "lang": "en"}, 404,
            "no_task")


def test_task_requests_are_rate_limited(people, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES",
                        {**ScopedRateThrottle.THROTTLE_RATES, "task_request": "3/min"})
    client = token_client(people["alice"])
    for _ in range(3):
        client.post("/api/v1/tasks/", {"type": "label_initial_prompt", "lang": "en"})
    refused(client, "/api/v1/tasks/", {"type": "label_initial_prompt", "lang": "en"}, 429, "throttled")


def test_reacting_to_ones_own_message_or_with_an_unknown_emoji_is_refused(people, growing_prompt):
    client = token_client(people["alice"])
    refused(client, f"/api/v1/messages/{growing_prompt.pk}/emoji/", {"emoji": "+1", "op": "add"}, 403, "own_message")
    other = token_client(people["bob"])
    refused(other, f"/api/v1/messages/{growing_prompt.pk}/emoji/", {"emoji": "cat", "op": "add"}, 400, "invalid")
    refused(other, f"/api/v1/messages/{growing_prompt.pk}/report/", {"reason": ""}, 400, "invalid")
