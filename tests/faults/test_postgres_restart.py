"""PostgreSQL restarted while contributors submit through the API of a real gunicorn (the
production server: persistent connections, CONN_MAX_AGE with CONN_HEALTH_CHECKS).

Every request either succeeds or fails with the API's JSON error; once the database is back the
app recovers by itself (no 5xx for a request sent after the restart); every acknowledged
submission is in the database; and the trees are whole: the counters equal a recount of the rows
(the invariants of the Hypothesis state machine in tests/tasks/test_state_machine.py).
"""

import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
import requests
from rest_framework.authtoken.models import Token

from tasks.models import Message, Task
from tasks.scoring import trees_scoring_retry
from tasks.tree_manager import tree_config
from tests.factories import UserFactory
from tests.tasks.test_state_machine import (
    Snapshot,
    check_counters,
    check_progress,
    check_ranks,
    check_reservations,
    check_structure,
    check_task_results,
    check_who_did_what,
)

from .conftest import GUNICORN, free_port, subprocess_env, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CONTRIBUTORS = 6
TEXT_TASKS = ("initial_prompt", "assistant_reply", "prompter_reply")
TREE_SETTINGS = {"goal_tree_size": 3, "num_reviews_reply": 1, "num_reviews_initial_prompt": 1,
                 "num_required_rankings": 1, "max_pending_tasks_per_user": 1000}


@dataclass
class Answer:
    user_id: int
    kind: str  # "request" or "submit"
    sent: float  # time.monotonic()
    status: int | None  # None: no HTTP answer at all
    body: dict | str
    task: dict | None = None


@pytest.fixture
def web(processes, tree_settings):
    """gunicorn as in the Dockerfile (2 workers x 4 threads) on the test database, jobs in-process."""
    tree_settings(**TREE_SETTINGS)
    port = free_port()
    env = subprocess_env(
        DEBUG="false", SECRET_KEY="faults-test-key", ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="ERROR", OASST_TASK_REQUEST_RATE="100000/min", OASST_SUBMISSION_RATE="100000/min",
        **{f"OASST_{name.upper()}": str(value) for name, value in TREE_SETTINGS.items()},
    )
    env.pop("REDIS_URL", None)  # jobs (scoring) run in the request, as in the Hypothesis state machine
    server = processes([GUNICORN, "oasst.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                        "--timeout", "60"], env)
    base = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{base}/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, timeout=60, interval=0.3, what="gunicorn to answer /healthz")
    yield base
    server.stop()


def submission_for(task: dict) -> dict:
    if task["type"] in TEXT_TASKS:
        return {"text": f"{task['type']} {uuid.uuid4().hex}", "client_id": uuid.uuid4().hex}
    if task["type"].startswith("rank_"):
        return {"ranking": [reply["id"] for reply in task["reply_messages"]]}
    return {"labels": {"spam": 0, **dict.fromkeys(task["mandatory_labels"], 0)}}


def contribute(base: str, user, token: str, stop: threading.Event, answers: list[Answer]) -> None:
    """Request a task, submit it (again after a failure); again, until stopped."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"

    def post(kind: str, path: str, payload: dict, task=None) -> Answer:
        sent = time.monotonic()
        try:
            response = session.post(f"{base}{path}", json=payload, timeout=30)
        except requests.RequestException as error:
            answer = Answer(user.pk, kind, sent, None, repr(error), task)
        else:
            is_json = response.headers.get("Content-Type", "").startswith("application/json")
            answer = Answer(user.pk, kind, sent, response.status_code, response.json() if is_json else response.text,
                            task)
        answers.append(answer)
        return answer

    rng = random.Random(user.pk)
    while not stop.is_set():
        handed = post("request", "/api/v1/tasks/", {"type": "random", "lang": "en"})
        if handed.status != 201:
            time.sleep(0.05)
            continue
        time.sleep(rng.uniform(0, 0.3))  # writing: the database may go away meanwhile
        payload = submission_for(handed.body)
        while not stop.is_set():  # a failed submission is sent again, as the web page and clients do
            submitted = post("submit", f"/api/v1/tasks/{handed.body['id']}/submit/", payload, handed.body)
            if submitted.status is not None and submitted.status < 500:
                break
            time.sleep(0.1)


def test_a_postgres_restart_under_load_fails_requests_cleanly_and_loses_no_acknowledged_submission(web, postgres):
    users = [UserFactory() for _ in range(CONTRIBUTORS)]
    tokens = {user.pk: Token.objects.create(user=user).key for user in users}
    answers: list[Answer] = []
    stop = threading.Event()
    threads = [threading.Thread(target=contribute, args=(web, user, tokens[user.pk], stop, answers))
               for user in users]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)
        restart_began = time.monotonic()
        postgres.restart()
        restarted = time.monotonic()
        time.sleep(4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    before = [a for a in answers if a.sent < restart_began]
    during = [a for a in answers if restart_began <= a.sent < restarted]
    after = [a for a in answers if a.sent >= restarted]
    failed = [a for a in answers if a.status is None or a.status >= 500]
    summary = (f"{len(answers)} answers ({len(before)} before, {len(during)} during, {len(after)} after the "
               f"{restarted - restart_began:.1f} s restart); {len(failed)} failed "
               f"({sum(a.kind == 'submit' for a in failed)} submissions)")
    print(summary)  # the figures docs/security.md quotes (pytest -s)
    assert len(before) > 20 and len(after) > 20, summary

    # Failures are the API's JSON error, and only while the database was down (or from requests in flight then).
    assert all(a.status is not None for a in answers), [a.body for a in answers if a.status is None][:3]
    assert failed, f"the restart was not felt: {summary}"  # the test must have hit the fault
    for answer in failed:
        assert answer.status in (500, 503) and isinstance(answer.body, dict), answer.body
        assert set(answer.body) == {"detail", "code"}, answer.body
    late_failures = [a for a in failed if a.sent >= restarted]
    assert not late_failures, f"requests sent after the restart still failed: {late_failures[:3]} ({summary})"
    assert any(a.status == 201 for a in after if a.kind == "submit"), summary

    # Every acknowledged submission is in the database, whole.
    acknowledged = [a for a in answers if a.kind == "submit" and a.status == 201]
    done = {str(pk) for pk in Task.objects.filter(done=True).values_list("pk", flat=True)}
    for answer in acknowledged:
        assert str(answer.task["id"]) in done, f"task {answer.task['id']} lost its acknowledged submission"
        if answer.task["type"] in TEXT_TASKS:
            assert Message.objects.filter(pk=answer.body["id"], text=answer.body["text"]).exists()

    # No half-written tree: what the scoring sweep finishes, and the invariants of the state machine.
    trees_scoring_retry(unsent_after=timedelta(0))
    snapshot = Snapshot(tree_config())
    for check in (check_structure, check_reservations, check_who_did_what, check_counters, check_task_results,
                  check_progress, check_ranks):
        check(snapshot)
