"""A scripted session through the API alone: a tree goes from a new prompt through review,
growth and ranking to ready_for_export."""

import pytest

from tests.conftest import token_client
from tests.factories import UserFactory

GOOD = {"spam": 0, "lang_mismatch": 0}


def request_task(client, task_type, lang="en"):
    response = client.post("/api/v1/tasks/", {"type": task_type, "lang": lang})
    assert response.status_code == 201, response.json()
    return response.json()


def submit(client, task, body):
    response = client.post(f"/api/v1/tasks/{task['id']}/submit/", body)
    assert response.status_code == 201, response.json()
    return response.json()


def good_labels(task):
    return {name: 0 for name in task["mandatory_labels"]} | {k: v for k, v in GOOD.items()
                                                             if k in task["valid_labels"]}


@pytest.mark.django_db(transaction=True)
def test_a_tree_grows_from_prompt_to_ready_for_export_through_the_api(small_trees):
    alice, bob, carol, dave = (token_client(UserFactory(username=name)) for name in ("alice", "bob", "carol", "dave"))

    prompt_task = request_task(alice, "initial_prompt")
    assert prompt_task["type"] == "initial_prompt"
    assert alice.post(f"/api/v1/tasks/{prompt_task['id']}/ack/").status_code == 200
    prompt = submit(alice, prompt_task, {"text": "  What is a reward model?  ", "client_id": "c-1"})
    assert prompt["text"] == "What is a reward model?" and prompt["role"] == "prompter"
    tree = alice.get(f"/api/v1/messages/{prompt['id']}/tree/").json()
    assert tree["tree_state"] == "initial_prompt_review"

    # Alice may not review her own prompt; Bob may.
    assert alice.post("/api/v1/tasks/", {"type": "label_initial_prompt", "lang": "en"}).json()["code"] == "no_task"
    review_task = request_task(bob, "label_initial_prompt")
    assert review_task["message_id"] == prompt["id"]
    assert [m["text"] for m in review_task["conversation"]] == ["What is a reward model?"]
    assert "spam" in review_task["mandatory_labels"]
    submit(bob, review_task, {"labels": good_labels(review_task)})
    assert bob.get(f"/api/v1/messages/{prompt['id']}/tree/").json()["tree_state"] == "growing"

    replies = []
    for client, text in ((bob, "A model that scores replies."), (carol, "It predicts human preference.")):
        task = request_task(client, "assistant_reply")
        assert task["conversation"][-1]["id"] == prompt["id"]
        replies.append(submit(client, task, {"text": text}))
    assert {r["role"] for r in replies} == {"assistant"}
    # The goal size (3) is reserved: no third reply is handed out.
    assert dave.post("/api/v1/tasks/", {"type": "assistant_reply", "lang": "en"}).json()["code"] == "no_task"

    for _ in replies:
        task = request_task(dave, "label_assistant_reply")
        assert task["message_id"] in {r["id"] for r in replies}
        submit(dave, task, {"labels": good_labels(task)})
    assert dave.get(f"/api/v1/messages/{prompt['id']}/tree/").json()["tree_state"] == "ranking"

    # Bob and Carol wrote the replies: they are not offered the ranking.
    for client in (bob, carol):
        assert client.post("/api/v1/tasks/", {"type": "rank_assistant_replies", "lang": "en"}).json()["code"] == \
            "no_task"
    rank_task = request_task(alice, "rank_assistant_replies")
    offered = [m["id"] for m in rank_task["reply_messages"]]
    assert sorted(offered) == sorted(r["id"] for r in replies)
    best_first = [replies[1]["id"], replies[0]["id"]]
    submit(alice, rank_task, {"ranking": best_first})

    tree = alice.get(f"/api/v1/messages/{prompt['id']}/tree/").json()
    assert tree["tree_state"] == "ready_for_export"
    ranked = tree["prompt"]["replies"]
    assert [node["message_id"] for node in ranked] == best_first
    assert [node["rank"] for node in ranked] == [0, 1]
    assert tree["message_tree_id"] == prompt["id"]


@pytest.mark.django_db(transaction=True)
def test_random_requests_move_a_tree_forward(small_trees):
    users = [token_client(UserFactory()) for _ in range(4)]
    author = users[0]
    prompt = submit(author, request_task(author, "initial_prompt"), {"text": "Tell me about tides."})
    done = 0
    for _ in range(40):
        for index, client in enumerate(users[1:], start=1):
            response = client.post("/api/v1/tasks/", {"type": "random", "lang": "en"})
            if response.status_code == 404:
                continue
            task = response.json()
            if task["type"] == "initial_prompt":
                client.post(f"/api/v1/tasks/{task['id']}/nack/", {"reason": "not now"})
            elif task["type"].startswith("label_"):
                submit(client, task, {"labels": good_labels(task)})
            elif task["type"].startswith("rank_"):
                submit(client, task, {"ranking": [m["id"] for m in task["reply_messages"]]})
            else:
                submit(client, task, {"text": f"Reply {done} by user {index}."})
            done += 1
        if author.get(f"/api/v1/messages/{prompt['id']}/tree/").json()["tree_state"] == "ready_for_export":
            break
    assert author.get(f"/api/v1/messages/{prompt['id']}/tree/").json()["tree_state"] == "ready_for_export"
