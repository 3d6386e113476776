"""Query counts of the hot endpoints are pinned: task request, ack and submit.

SQLite runs the candidate query as one statement per pool (it cannot limit the parts of a UNION),
so its request counts are higher; in tests, each transaction adds a SAVEPOINT and its RELEASE.
"""

import pytest
from django.db import connection

from tests.conftest import token_client
from tests.factories import UserFactory
from tests.tasks.builders import review, write_prompt

pytestmark = pytest.mark.django_db

# (request, ack, submit) per database, for a first-time contributor (the ack: the token and one UPDATE ...
# RETURNING; the submit also records the points event and starts their streak; the label submit here is the
# deciding review, which accepts the prompt). A request's claim reads the user's cap and item again under their
# claim lock: one statement, plus the lock on PostgreSQL.
EXPECTED = {
    "postgresql": {"initial_prompt": (7, 2, 10), "assistant_reply": (10, 2, 12), "label_initial_prompt": (9, 2, 14)},
    "sqlite": {"initial_prompt": (9, 2, 10), "assistant_reply": (12, 2, 12), "label_initial_prompt": (11, 2, 14)},
}


@pytest.fixture
def growing(small_trees, django_capture_on_commit_callbacks):
    author = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):
            write_prompt(author, text=f"Question number {i}?")
            review(UserFactory(), "label_initial_prompt")
    write_prompt(UserFactory(), text="One more question?")
    return author


@pytest.mark.parametrize("task_type", ["initial_prompt", "assistant_reply", "label_initial_prompt"])
def test_hot_endpoints_run_a_fixed_number_of_queries(growing, django_assert_num_queries, task_type):
    request_queries, ack_queries, submit_queries = EXPECTED[connection.vendor][task_type]
    client = token_client(UserFactory())
    with django_assert_num_queries(request_queries):
        task = client.post("/api/v1/tasks/", {"type": task_type, "lang": "en"}).json()
    with django_assert_num_queries(ack_queries):
        assert client.post(f"/api/v1/tasks/{task['id']}/ack/").status_code == 200
    body = {"labels": {"spam": 0}} if task_type.startswith("label_") else {"text": "A fine contribution."}
    with django_assert_num_queries(submit_queries):
        assert client.post(f"/api/v1/tasks/{task['id']}/submit/", body).status_code == 201


def test_task_request_queries_do_not_grow_with_the_number_of_trees(growing, django_assert_num_queries):
    expected = EXPECTED[connection.vendor]["assistant_reply"][0]
    client = token_client(UserFactory())
    with django_assert_num_queries(expected):
        assert client.post("/api/v1/tasks/", {"type": "assistant_reply", "lang": "en"}).status_code == 201
    for i in range(10):
        write_prompt(UserFactory(), text=f"Another question {i}?")
    with django_assert_num_queries(expected):
        assert client.post("/api/v1/tasks/", {"type": "assistant_reply", "lang": "en"}).status_code == 201
