"""GET /metrics: Prometheus' text format behind its guard (a bearer token and/or client networks), with the
request counts and latencies per view, and the figures read at scrape time (tasks, trees, training runs,
active contributors, Celery queues)."""

import ipaddress
import logging
import os
import runpy
import subprocess
import sys
import types
from pathlib import Path

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from oasst.env import Env
from oasst.metrics import celery_queue_lengths
from tasks.models import Task
from tests.conftest import token_client
from tests.factories import UserFactory
from training.models import TrainingRun

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-token-0123456789abcdef"  # noqa: S105
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


@pytest.fixture
def guarded(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW_IPS = []
    return settings


def scrape(client=None, **headers) -> dict:
    """{(sample name, frozenset of labels): value} of one authorised scrape."""
    response = (client or Client()).get("/metrics", **(headers or AUTH))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# --- The guard -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_is_an_ordinary_404_when_no_guard_is_configured(client, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_IPS = "", []
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 404
    assert b"oasst_" not in response.content
    assert response.content == client.get("/no-such-page").content  # nothing tells it apart from an unknown path


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789abc", f"Token {TOKEN}", TOKEN,
                                           f"Bearer {TOKEN}x", "Bearer "])
def test_metrics_without_the_right_bearer_token_is_a_404(client, guarded, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 404
    assert b"oasst_" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["contributor", "moderator", "superuser"])
def test_signed_in_users_without_the_token_are_refused_too(guarded, role):
    user = UserFactory(is_staff=role != "contributor", is_superuser=role == "superuser")
    client = Client()
    client.force_login(user)
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_metrics_is_served_with_the_right_token(client, guarded):
    samples = scrape(client)
    assert value(samples, "oasst_contributors_active") == 0


@pytest.mark.django_db
def test_allowed_networks_admit_only_their_addresses(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW_IPS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1")]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 404
    # Without trusted proxies a client's own X-Forwarded-For is ignored, as the rate limits ignore it.
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_X_FORWARDED_FOR="10.0.0.1").status_code == 404


@pytest.mark.django_db
def test_behind_a_trusted_proxy_the_address_it_appended_is_checked(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW_IPS = [ipaddress.ip_network("10.0.0.0/8")]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "172.18.0.2"
    assert client.get("/metrics", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR=proxy,
                      HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.5").status_code == 404  # forged first entry


@pytest.mark.django_db
def test_with_both_guards_both_must_pass(client, guarded):
    guarded.METRICS_ALLOW_IPS = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5", **AUTH).status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7", **AUTH).status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5").status_code == 404


@pytest.mark.django_db
def test_metrics_answers_on_an_internal_address_without_https_redirect(client, guarded):
    guarded.ALLOWED_HOSTS = ["oasst.example.org"]
    guarded.SECURE_SSL_REDIRECT = True
    assert client.get("/metrics", HTTP_HOST="10.0.0.7:8000", **AUTH).status_code == 200
    assert client.get("/metrics", HTTP_HOST="10.0.0.7:8000").status_code == 400  # refused: the host check runs


@pytest.mark.django_db
def test_the_token_is_never_logged(client, guarded, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get("/metrics", **AUTH)
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}-wrong")
        client.get("/", **AUTH)
    assert caplog.records
    assert TOKEN not in caplog.text


def test_a_short_metrics_token_stops_startup_without_echoing_it():
    environment = {**os.environ, "OASST_METRICS_TOKEN": "short"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT,
                            env=environment | {"DJANGO_SETTINGS_MODULE": "oasst.settings"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "OASST_METRICS_TOKEN must be at least 16" in result.stderr
    assert "short" not in result.stderr.replace("OASST_METRICS_TOKEN must", "")


def test_allowed_networks_are_parsed_strictly():
    assert Env({"N": "10.0.0.0/8, ::1,192.0.2.7"}).networks("N") == [
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1"), ipaddress.ip_network("192.0.2.7")]
    with pytest.raises(ImproperlyConfigured, match="N: 'intranet'"):
        Env({"N": "10.0.0.0/8,intranet"}).networks("N")


# --- What it reports ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tasks_trees_runs_and_contributors_are_counted(guarded, small_trees):
    alice, bob = token_client(UserFactory(username="alice")), token_client(UserFactory(username="bob"))
    before = scrape()
    assert value(before, "oasst_tasks", type="initial_prompt", state="pending") == 0
    assert value(before, "oasst_task_last_handed_out_timestamp_seconds") is None

    task = alice.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).json()
    alice.post(f"/api/v1/tasks/{task['id']}/ack/")
    assert alice.post(f"/api/v1/tasks/{task['id']}/submit/", {"text": "What is a reward model?"}).status_code == 201
    bob.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"})
    second = bob.post("/api/v1/tasks/", {"type": "label_initial_prompt", "lang": "en"}).json()
    bob.post(f"/api/v1/tasks/{second['id']}/ack/")
    TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.RUNNING)
    TrainingRun.objects.create(kind=TrainingRun.Kind.DPO, status=TrainingRun.Status.FAILED)

    samples = scrape()
    assert value(samples, "oasst_tasks", type="initial_prompt", state="done") == 1
    assert value(samples, "oasst_tasks", type="initial_prompt", state="pending") == 1
    assert value(samples, "oasst_tasks", type="label_initial_prompt", state="acked") == 1
    assert value(samples, "oasst_tasks", type="rank_assistant_replies", state="expired") == 0
    assert value(samples, "oasst_trees", state="initial_prompt_review") == 1
    assert value(samples, "oasst_trees", state="growing") == 0
    assert value(samples, "oasst_training_runs", kind="reward_model", status="running") == 1
    assert value(samples, "oasst_training_runs", kind="dpo", status="failed") == 1
    assert value(samples, "oasst_training_runs", kind="sft", status="queued") == 0
    assert value(samples, "oasst_contributors_active") == 1  # alice contributed; bob only took tasks
    newest = Task.objects.latest("created_at").created_at.timestamp()
    assert value(samples, "oasst_task_last_handed_out_timestamp_seconds") == pytest.approx(newest)


@pytest.mark.django_db
def test_requests_are_counted_by_view_name_not_by_path(client, guarded):
    before = scrape()
    client.get("/")
    client.get("/no-such-page-1")
    client.get("/no-such-page-2")
    client.post("/api/v1/tasks/", {"type": "random"})  # anonymous: 401
    after = scrape()

    def moved(name, **labels):
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert moved("oasst_http_requests_total", view="home", method="GET", status="2xx") == 1
    assert moved("oasst_http_requests_total", view="<unresolved>", method="GET", status="4xx") == 2
    assert moved("oasst_http_requests_total", view="api:tasks", method="POST", status="4xx") == 1
    assert moved("oasst_http_request_duration_seconds_count", view="home", method="GET") == 1
    assert not any("no-such-page" in str(labels) for _, labels in after)


@pytest.mark.django_db
def test_a_scrape_costs_four_queries(client, guarded, django_assert_num_queries):
    with django_assert_num_queries(4):  # tasks, trees, training runs: one GROUP BY each; active contributors
        client.get("/metrics", **AUTH)


@pytest.mark.django_db
def test_celery_queue_lengths_are_read_from_the_redis_broker(client, guarded):
    url = "redis://127.0.0.1:6379/15"
    try:
        broker = redis.Redis.from_url(url, socket_connect_timeout=1)
        broker.flushdb()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    guarded.REDIS_URL = guarded.CELERY_BROKER_URL = url
    broker.rpush("training", "job-1", "job-2")
    broker.rpush("default", "job-3")
    try:
        samples = scrape(client)
    finally:
        broker.flushdb()
    assert value(samples, "oasst_celery_broker_up") == 1
    assert value(samples, "oasst_celery_queue_length", queue="training") == 2
    assert value(samples, "oasst_celery_queue_length", queue="default") == 1
    assert value(samples, "oasst_celery_queue_length", queue="scoring") == 0


@pytest.mark.django_db
def test_an_unreachable_broker_is_reported_and_the_rest_still_served(client, guarded):
    guarded.REDIS_URL = guarded.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    samples = scrape(client)
    assert value(samples, "oasst_celery_broker_up") == 0
    assert not any(name == "oasst_celery_queue_length" for name, _ in samples)
    assert value(samples, "oasst_contributors_active") == 0


def test_queues_without_a_broker_are_not_reported(settings):
    settings.REDIS_URL = None
    assert list(celery_queue_lengths()) == []


# --- Several processes ---------------------------------------------------------------------------------------

COUNT_IN_A_CHILD = """
import os, sys, types
os.environ["DJANGO_SETTINGS_MODULE"] = "oasst.settings"
import django
django.setup()
from oasst.metrics import request_observe
request = types.SimpleNamespace(resolver_match=types.SimpleNamespace(view_name="home"), method="GET")
for _ in range(int(sys.argv[1])):
    request_observe(request, 200, 0.01)
"""


@pytest.mark.django_db
def test_counts_of_several_worker_processes_are_merged(client, guarded, tmp_path, monkeypatch):
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    children = [subprocess.Popen([sys.executable, "-c", COUNT_IN_A_CHILD, str(n)], cwd=ROOT, env=environment)
                for n in (3, 4)]
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape(client)
    assert value(samples, "oasst_http_requests_total", view="home", method="GET", status="2xx") == 7
    assert value(samples, "oasst_http_request_duration_seconds_count", view="home", method="GET") == 7
    assert value(samples, "oasst_tasks", type="initial_prompt", state="pending") == 0  # the database's too


def test_gunicorn_removes_a_dead_workers_live_files_and_keeps_its_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("gauge_livesum_4242.db", "counter_4242.db", "gauge_livesum_4343.db"):
        (tmp_path / name).write_bytes(b"")
    # gunicorn.conf.py is gunicorn's settings file, not a module on the path
    child_exit = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["child_exit"]
    child_exit(server=None, worker=types.SimpleNamespace(pid=4242))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["counter_4242.db", "gauge_livesum_4343.db"]


def test_gunicorn_empties_the_folder_of_an_earlier_run_when_it_starts(tmp_path, monkeypatch):
    folder = tmp_path / "prometheus"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    on_starting = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["on_starting"]
    on_starting(server=None)  # a folder that is not there yet is made
    (folder / "counter_4242.db").write_bytes(b"")
    (folder / "histogram_4343.db").write_bytes(b"")
    on_starting(server=None)
    assert list(folder.iterdir()) == []
