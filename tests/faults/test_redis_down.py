"""Redis (cache and broker) down: pages and the API keep working, /healthz answers 503 naming the
cache and the broker, rate limits fail open (oasst/cache.py says why), and the jobs enqueued
meanwhile are sent once Redis is back."""

import json
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.core.cache import cache

from oasst.celery import app
from tasks import services
from tasks.models import MessageTree, TreeState
from tasks.scoring import trees_scoring_retry
from tests.conftest import token_client
from tests.factories import UserFactory
from tests.tasks.builders import reply, review, write_prompt
from training.models import TrainingRun
from training.services import JOB_NOT_SENT, training_run_launch, training_runs_resend_unsent

pytestmark = [pytest.mark.faults, pytest.mark.broker, pytest.mark.django_db(transaction=True)]

FAST = 2.0  # seconds: no request may hang on the dead Redis


@pytest.fixture
def redis_down(redis_server):
    redis_server.stop()
    yield redis_server
    if not redis_server.answers():
        redis_server.start()


@pytest.fixture
def broker_jobs():
    """Jobs go to the broker (not run in-process) for this test."""
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_pages_and_the_api_keep_working_while_redis_is_down(client, redis_down, small_trees):
    author, reviewer = UserFactory(), UserFactory()
    response, seconds = timed(lambda: client.get("/"))  # the landing page reads its counts from the cache
    assert response.status_code == 200 and seconds < FAST
    api = token_client(author)
    task, seconds = timed(lambda: api.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}))
    assert task.status_code == 201, task.json()
    assert seconds < FAST
    submitted = api.post(f"/api/v1/tasks/{task.json()['id']}/submit/", {"text": "Why is the sky blue?"})
    assert submitted.status_code == 201, submitted.json()
    client.force_login(reviewer)
    assert client.get("/dashboard/").status_code == 200
    assert cache.get("landing-counts") is None  # a miss, not an error
    cache.set("anything", 1)  # dropped, not raised


def test_healthz_names_the_cache_and_the_broker_while_redis_is_down_and_recovers(client, redis_server):
    assert client.get("/healthz").status_code == 200
    redis_server.stop()
    try:
        response, seconds = timed(lambda: client.get("/healthz"))
    finally:
        redis_server.start()
    assert response.status_code == 503
    body = response.content.decode()
    assert "cache: ConnectionError" in body and "broker: ConnectionError" in body
    assert "database" not in body
    assert seconds < FAST
    assert client.get("/healthz").status_code == 200  # back by itself, no restart of the app


def test_rate_limits_count_while_redis_is_up_and_fail_open_while_it_is_down(api_client, redis_server):
    """The token endpoint allows 10 attempts a minute per client (counted in the cache)."""

    def attempts(n):
        return [api_client.post("/api/v1/auth/token/", {"username": "nobody", "password": "wrong"}).status_code
                for _ in range(n)]

    assert attempts(11)[-1] == 429  # counted in Redis: the 11th is refused
    cache.clear()
    redis_server.stop()
    try:
        down = attempts(15)
    finally:
        redis_server.start()
    assert 429 not in down and set(down) == {400}  # nothing counted: open, by design
    cache.clear()
    assert attempts(11)[-1] == 429  # counting again once Redis is back


def ranking_tree(people):
    """A tree waiting for its one ranking (small_trees settings), built while Redis is up."""
    write_prompt(people[0])
    review(people[1], "label_initial_prompt")
    reply(people[2], "Answer one.")
    reply(people[3], "Answer two.")
    review(people[4], "label_assistant_reply")
    review(people[4], "label_assistant_reply")
    return services.task_request(user=people[5], task_type="rank_assistant_replies", lang="en")


def test_jobs_enqueued_while_redis_is_down_are_sent_when_it_returns(small_trees, broker_jobs, redis_server,
                                                                      tmp_path):
    people = [UserFactory() for _ in range(6)]
    rank_task = ranking_tree(people)
    export = tmp_path / "export.jsonl"
    export.write_text("{}\n")
    redis_server.stop()
    try:
        # The last ranking moves the tree to ready_for_scoring and enqueues its scoring job: no broker.
        services.ranking_submit(user=people[5], task_id=rank_task.pk,
                                ranking=[m["id"] for m in rank_task.payload["reply_messages"]])
        run = training_run_launch(kind=TrainingRun.Kind.REWARD_MODEL, data_file=str(export), data_sha256="",
                                  parameters={}, output_root=str(tmp_path))
    finally:
        redis_server.start()
    tree = MessageTree.objects.get(pk=rank_task.tree_id)
    assert tree.state == TreeState.READY_FOR_SCORING  # committed; its job was not sent
    run.refresh_from_db()
    assert (run.status, run.error) == (TrainingRun.Status.QUEUED, JOB_NOT_SENT)

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        client.delete("training")
        assert training_runs_resend_unsent() == 1
        sent = [json.loads(message) for message in client.lrange("training", 0, -1)]
        assert [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in sent] == [
            ("training.reward_model_train", f"({run.pk},)")]
        run.refresh_from_db()
        assert run.error == ""
        assert training_runs_resend_unsent() == 0  # sent once
    finally:
        client.delete("training")
        client.close()

    assert trees_scoring_retry() == 0  # a tree ready for seconds may still have its job coming
    assert trees_scoring_retry(unsent_after=timedelta(0)) == 1
    tree.refresh_from_db()
    assert tree.state == TreeState.READY_FOR_EXPORT
