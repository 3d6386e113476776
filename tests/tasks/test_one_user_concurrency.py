"""One user sending many task requests at once, through the API, on PostgreSQL and on SQLite:
never more open tasks than the pending cap, never one item twice, and the other requests get
the usual refusals (429 at the cap, 404 when nothing is left for them) without changing anything.
"""

import sqlite3
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest
from django.conf import settings
from django.db import connection, connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks import selectors, services
from tasks.models import Message, MessageTree, Task
from tests.factories import UserFactory
from tests.tasks.builders import prompt_in_ranking, reply, review, write_prompt

THREADS = 30
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def concurrent_db(transactional_db, tmp_path):
    """The database the requests race on. SQLite's test database is in memory with a shared cache,
    where a second writer fails at once ("table is locked") instead of waiting for the lock as it
    does in the WAL file the site runs on: there, the test runs on a file copy of it, opened with
    the site's options (IMMEDIATE transactions, WAL, busy timeout)."""
    if connection.vendor != "sqlite":
        yield
        return
    path = tmp_path / "concurrent.sqlite3"
    connection.ensure_connection()
    with closing(sqlite3.connect(path)) as copy:
        connection.connection.backup(copy)
    in_memory, on_file = connections.settings["default"], {**connections.settings["default"], "NAME": str(path)}
    memory_connection = connections["default"]
    connections.settings["default"] = on_file  # the threads' connections
    connections["default"] = connections.create_connection("default")
    try:
        yield
    finally:
        connections["default"].close()
        connections.settings["default"] = in_memory
        connections["default"] = memory_connection


def burst(user, body: dict) -> list:
    """THREADS requests for a task from one user, released together, each on its own connection."""
    token = Token.objects.get_or_create(user=user)[0].key
    barrier = threading.Barrier(THREADS)

    def post(_):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            barrier.wait()
            return client.post("/api/v1/tasks/", body, format="json")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(post, range(THREADS)))


def outcomes(responses) -> Counter:
    return Counter(r.status_code if r.status_code == 201 else (r.status_code, r.json().get("code"))
                   for r in responses)


def open_items(user) -> Counter:
    return Counter(selectors.open_tasks(user=user).exclude(item=None).values_list("item_id", flat=True))


def test_concurrent_requests_from_one_user_stop_at_the_pending_cap(concurrent_db, tree_settings):
    tree_settings(num_reviews_initial_prompt=3)
    cap = settings.OASST["max_pending_tasks_per_user"]
    for i in range(3):
        write_prompt(UserFactory(), text=f"Question number {i}?")
    user = UserFactory()
    results = outcomes(burst(user, {"type": "random", "lang": "en"}))
    assert results == {201: cap, (429, "too_many_pending_tasks"): THREADS - cap}
    assert Task.objects.filter(user=user).count() == cap
    assert max(open_items(user).values(), default=1) == 1
    for prompt in Message.objects.filter(parent=None):
        assert prompt.reviews_pending == Task.objects.filter(item=prompt).count() <= 1


def _prompt_to_review(tree_settings):
    tree_settings(num_reviews_initial_prompt=3)
    return write_prompt(UserFactory())


def _reply_to_review(tree_settings):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=3)
    write_prompt(UserFactory())
    review(UserFactory(), "label_initial_prompt")
    services.lottery_activate(lang="en")
    return reply(UserFactory(), "The moon pulls the water.")


def _parent_to_reply_to(tree_settings):
    tree_settings(num_reviews_initial_prompt=1, max_children_count=3)
    prompt = write_prompt(UserFactory())
    review(UserFactory(), "label_initial_prompt")
    services.lottery_activate(lang="en")
    return prompt


def _parent_to_rank(tree_settings):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1, goal_tree_size=3, num_required_rankings=3)
    return prompt_in_ranking([UserFactory() for _ in range(3)])


@pytest.mark.parametrize(("task_type", "build", "pending"), [
    ("label_initial_prompt", _prompt_to_review, "reviews_pending"),
    ("label_assistant_reply", _reply_to_review, "reviews_pending"),
    ("assistant_reply", _parent_to_reply_to, "replies_pending"),
    ("rank_assistant_replies", _parent_to_rank, "rankings_pending"),
])
def test_concurrent_requests_from_one_user_get_an_item_once(concurrent_db, tree_settings, task_type, build, pending):
    item = build(tree_settings)  # an item three users may take: it needs three reviews, replies or rankings
    user = UserFactory()
    results = outcomes(burst(user, {"type": task_type, "lang": "en"}))
    assert results == {201: 1, (404, "no_task"): THREADS - 1}
    assert open_items(user) == {item.pk: 1}
    item.refresh_from_db()
    assert getattr(item, pending) == 1
    if task_type == "assistant_reply":
        assert MessageTree.objects.get(pk=item.tree_id).replies_pending == 1
