"""Abuse through the real endpoints: rate limits per account and per client IP (sign-up, log-in, API
tokens, task requests and submissions, on the API and the pages), the pending-task cap on the pages,
and red-flag auto-moderation through the API.

Already proven elsewhere (not repeated here): failed log-ins per account
(tests/oasst/test_accounts.py::test_repeated_failed_logins_are_rate_limited), the token endpoint per
IP (tests/oasst/test_api.py::test_token_endpoint_is_rate_limited), task requests per user
(tests/tasks/test_refusals.py::test_task_requests_are_rate_limited), the pending-task cap and its window
on the API (tests/tasks/test_refusals.py::test_ninth_pending_task_within_five_minutes_is_refused,
::test_pending_tasks_older_than_the_window_do_not_count), duplicate text
(tests/tasks/test_refusals.py::test_same_text_from_same_user_within_two_hours_is_refused), red flags in
the services (tests/tasks/test_services.py::test_red_flags_abort_a_prompt_tree,
::test_red_flags_delete_a_reply_with_its_subtree).

With REDIS_URL set (CI), the cache is Redis and every test here counts in it.
"""

import os
import uuid

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from oasst.models import User
from tasks import services
from tasks.models import MessageTree, Task
from tests.conftest import token_client
from tests.factories import PASSWORD, UserFactory
from tests.tasks.builders import reply_to, review, write_prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(monkeypatch):
    """Lower DRF rates for one test (the classes read them once, at import)."""

    def apply(**overrides):
        monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, **overrides})

    return apply


def signup(client, n: int, **extra):
    return client.post("/accounts/signup/", {
        "username": f"newbie{n}", "email": f"newbie{n}@example.org", "password1": "a-long-pass-phrase-9",
        "password2": "a-long-pass-phrase-9"}, **extra)


# --- Accounts (django-allauth's limits, counted in the cache) ---------------------------------------


def test_sign_ups_are_limited_per_ip_even_with_a_forged_forwarded_for():
    client = Client(REMOTE_ADDR="203.0.113.7")
    for n in range(20):  # allauth's default: 20 sign-ups a minute per IP
        assert signup(client, n, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code == 302
    refused = signup(client, 20, HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert refused.status_code == 429
    assert not User.objects.filter(username="newbie20").exists()
    assert signup(Client(REMOTE_ADDR="203.0.113.8"), 21).status_code == 302, "another address is not affected"


def test_failed_log_ins_are_limited_per_ip_across_accounts():
    victims = [UserFactory() for _ in range(11)]
    client = Client(REMOTE_ADDR="203.0.113.9")
    for victim in victims[:10]:  # allauth's default: 10 failures a minute per IP, whatever the account
        client.post("/accounts/login/", {"login": victim.username, "password": "guess"})
    response = client.post("/accounts/login/", {"login": victims[10].username, "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert response.status_code == 429 or "Too many failed login attempts" in response.content.decode()


def test_token_endpoint_failures_count_per_account_across_addresses_and_with_the_log_in_page():
    """Guessing one account's password from many addresses: after 5 failures the right password is
    refused too, on the API and on the log-in page, while other accounts are unaffected."""
    victim, bystander = UserFactory(), UserFactory()
    for n in range(5):
        wrong = APIClient(REMOTE_ADDR=f"192.0.2.{n}").post("/api/v1/auth/token/", {"username": victim.username,
                                                                                  "password": "guess"})
        assert wrong.status_code == 400
    refused = APIClient(REMOTE_ADDR="192.0.2.50").post("/api/v1/auth/token/", {"username": victim.username,
                                                                              "password": PASSWORD})
    assert refused.status_code == 429 and refused.json()["code"] == "throttled" and "Retry-After" in refused
    page = Client(REMOTE_ADDR="192.0.2.51")
    page.post("/accounts/login/", {"login": victim.username, "password": PASSWORD})
    assert "_auth_user_id" not in page.session
    other = APIClient(REMOTE_ADDR="192.0.2.52").post("/api/v1/auth/token/", {"username": bystander.username,
                                                                            "password": PASSWORD})
    assert other.status_code == 200 and other.json()["token"]


def test_token_endpoint_per_ip_limit_ignores_a_forged_forwarded_for():
    client = APIClient(REMOTE_ADDR="192.0.2.60")
    for n in range(10):
        client.post("/api/v1/auth/token/", {"username": f"nobody{n}", "password": "x"},
                    HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    response = client.post("/api/v1/auth/token/", {"username": "nobody", "password": "x"},
                           HTTP_X_FORWARDED_FOR="10.0.0.200")
    assert response.status_code == 429


def test_behind_a_trusted_proxy_each_client_address_has_its_own_budget(settings):
    """OASST_TRUSTED_PROXY_COUNT=1 (one reverse proxy in front): the client is the address the proxy
    appended to X-Forwarded-For, so clients behind it do not share one budget."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    proxy = APIClient(REMOTE_ADDR="10.0.0.1")
    for n in range(10):
        proxy.post("/api/v1/auth/token/", {"username": f"nobody{n}", "password": "x"},
                   HTTP_X_FORWARDED_FOR="forged.example, 198.51.100.70")
    spent = proxy.post("/api/v1/auth/token/", {"username": "nobody", "password": "x"},
                       HTTP_X_FORWARDED_FOR="another-forgery.example, 198.51.100.70")
    assert spent.status_code == 429
    other = proxy.post("/api/v1/auth/token/", {"username": "nobody", "password": "x"},
                       HTTP_X_FORWARDED_FOR="198.51.100.71")
    assert other.status_code == 400


# --- Task requests and submissions: per user and per IP, API and pages --------------------------------


def ip_client(user, address: str) -> APIClient:
    client = token_client(user)
    client.defaults["REMOTE_ADDR"] = address
    return client


def test_task_requests_are_limited_per_ip_across_accounts(small_trees, rates):
    rates(task_request_ip="3/min")
    accounts = [UserFactory() for _ in range(4)]
    for user in accounts[:3]:
        assert ip_client(user, "198.51.100.20").post("/api/v1/tasks/", {"type": "initial_prompt",
                                                                         "lang": "en"}).status_code == 201
    refused = ip_client(accounts[3], "198.51.100.20").post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"})
    assert refused.status_code == 429 and refused.json()["code"] == "throttled"
    assert Task.objects.count() == 3
    elsewhere = ip_client(accounts[3], "198.51.100.21").post("/api/v1/tasks/", {"type": "initial_prompt",
                                                                                 "lang": "en"})
    assert elsewhere.status_code == 201


def test_submissions_are_limited_per_user_and_per_ip(small_trees, rates):
    rates(submission="2/min", submission_ip="4/min")
    alice, bob = UserFactory(), UserFactory()
    alice_api = ip_client(alice, "198.51.100.30")
    for _ in range(2):  # every attempt counts, also one for an unknown task
        assert alice_api.post(f"/api/v1/tasks/{uuid.uuid4()}/submit/", {"text": "hi"}).status_code == 404
    assert alice_api.post(f"/api/v1/tasks/{uuid.uuid4()}/submit/", {"text": "hi"}).status_code == 429
    bob_api = ip_client(bob, "198.51.100.30")
    assert bob_api.post(f"/api/v1/tasks/{uuid.uuid4()}/submit/", {"text": "hi"}).status_code == 404
    refused = bob_api.post(f"/api/v1/tasks/{uuid.uuid4()}/submit/", {"text": "hi"})
    assert refused.status_code == 429, "the address's budget (4) is spent, though bob made one attempt only"


def test_the_task_pages_share_the_apis_limits(small_trees, rates):
    rates(task_request="2/min", submission="1/min")
    user = UserFactory()
    api = ip_client(user, "198.51.100.40")
    assert api.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).status_code == 201
    pages = Client(REMOTE_ADDR="198.51.100.40")
    pages.force_login(user)
    assert pages.post("/tasks/new/", {"type": "initial_prompt"}).status_code == 302
    refused = pages.post("/tasks/new/", {"type": "initial_prompt"})
    assert refused.status_code == 429 and "Retry-After" in refused
    assert Task.objects.filter(user=user).count() == 2
    first, second = Task.objects.filter(user=user)
    assert pages.post(f"/tasks/{first.pk}/submit/", {"text": "A first prompt?"}).status_code == 302
    refused = pages.post(f"/tasks/{second.pk}/submit/", {"text": "A second prompt?"})
    assert refused.status_code == 429
    second.refresh_from_db()
    assert not second.done


def test_task_pages_are_limited_per_ip_across_accounts(small_trees, rates):
    rates(task_request_ip="2/min")
    made = 0
    for _ in range(3):
        pages = Client(REMOTE_ADDR="198.51.100.50")
        pages.force_login(UserFactory())
        response = pages.post("/tasks/new/", {"type": "initial_prompt"})
        made += response.status_code == 302
    assert made == 2 and response.status_code == 429


def test_the_pending_task_cap_holds_on_the_pages(small_trees):
    user = UserFactory()
    pages = Client()
    pages.force_login(user)
    for _ in range(8):
        assert pages.post("/tasks/new/", {"type": "initial_prompt"}).status_code == 302
    refused = pages.post("/tasks/new/", {"type": "initial_prompt"})
    assert refused.status_code == 429 and Task.objects.filter(user=user).count() == 8


def test_duplicate_text_is_refused_on_the_pages(small_trees):
    user = UserFactory()
    write_prompt(user, text="Why is the sky blue?")
    pages = Client()
    pages.force_login(user)
    pages.post("/tasks/new/", {"type": "initial_prompt"})
    task = Task.objects.filter(user=user, done=False).get()
    refused = pages.post(f"/tasks/{task.pk}/submit/", {"text": " Why is the sky blue?  "})
    assert refused.status_code == 409 and "same text" in refused.content.decode()
    assert MessageTree.objects.count() == 1


# --- Red flags through the API ------------------------------------------------------------------------


def test_four_red_flags_through_the_api_delete_a_reply_and_abort_a_prompts_tree(small_trees,
                                                                                 django_capture_on_commit_callbacks):
    people = [UserFactory() for _ in range(7)]
    with django_capture_on_commit_callbacks(execute=True):
        prompt = write_prompt(people[0], text="Tell me about tides.")
        review(people[1], "label_initial_prompt")
    services.lottery_activate(lang="en")
    answer = reply_to(people[1], prompt, "Buy my course instead.")
    flaggers = [token_client(user) for user in people[2:6]]
    for client in flaggers[:3]:
        assert client.post(f"/api/v1/messages/{answer.pk}/emoji/", {"emoji": "red_flag"}).status_code == 200
    assert flaggers[0].get(f"/api/v1/messages/{answer.pk}/").status_code == 200, "three flags are not enough"
    flaggers[3].post(f"/api/v1/messages/{answer.pk}/emoji/", {"emoji": "red_flag"})
    assert flaggers[0].get(f"/api/v1/messages/{answer.pk}/").status_code == 404
    for client in flaggers:
        client.post(f"/api/v1/messages/{prompt.pk}/emoji/", {"emoji": "red_flag"})
    prompt.tree.refresh_from_db()
    assert prompt.tree.state == "aborted_low_grade"
    assert token_client(people[6]).post("/api/v1/tasks/", {"type": "assistant_reply", "lang": "en"}).status_code == 404


def test_one_user_cannot_red_flag_twice():
    author, troll = UserFactory(), UserFactory()
    prompt = write_prompt(author, text="A fair question?")
    client = token_client(troll)
    for _ in range(5):
        client.post(f"/api/v1/messages/{prompt.pk}/emoji/", {"emoji": "red_flag"})
    prompt.refresh_from_db()
    assert prompt.emojis.get("red_flag") == 1 and not prompt.deleted


# --- The shared cache -------------------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (set REDIS_URL)")
def test_limits_count_in_redis_so_every_worker_process_shares_them(small_trees, rates):
    """A second, independent Redis connection sees the throttle's history: the count lives in Redis,
    not in one process's memory."""
    import redis

    rates(task_request="1/min")
    user = UserFactory()
    assert "Redis" in settings.CACHES["default"]["BACKEND"]
    api = ip_client(user, "198.51.100.60")
    assert api.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).status_code == 201
    keys = redis.Redis.from_url(os.environ["REDIS_URL"]).keys(f"*throttle_task_request_{user.pk}")
    assert keys, "the per-user counter is not in Redis"
    assert api.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).status_code == 429


# --- Failed log-ins count per account, whichever identifier names it (pages and API) ---------------

_attempts = iter(range(1, 10_000))


def log_in(channel: str, identifier: str, password: str):
    """One log-in from a fresh address (the per-IP limit stays out of the way): the page's answer, or
    the token endpoint's."""
    attempt = next(_attempts)
    address = f"198.18.{attempt // 250}.{attempt % 250 + 1}"
    if channel == "api":
        return APIClient(REMOTE_ADDR=address).post("/api/v1/auth/token/", {"username": identifier,
                                                                            "password": password})
    return Client(REMOTE_ADDR=address).post("/accounts/login/", {"login": identifier, "password": password})


def refused_as_rate_limited(channel: str, response) -> bool:
    if channel == "api":
        return response.status_code == 429 and response.json()["code"] == "throttled"
    return response.status_code in (200, 429) and "Too many failed login attempts" in response.content.decode()


def identifiers(user) -> dict[str, str]:
    return {"username": user.username, "email": user.email, "EMAIL": user.email.upper(),
            "USERNAME": user.username.upper()}


GUESSES = [  # (channel, identifier) of the five failures, then of the try with the right password
    ([("page", "username")] * 5, ("page", "email")),
    ([("page", "username")] * 5, ("page", "EMAIL")),
    ([("page", "username")] * 5, ("api", "email")),
    ([("page", "email")] * 5, ("api", "username")),
    ([("api", "email")] * 5, ("page", "username")),
    ([("api", "EMAIL")] * 5, ("api", "USERNAME")),
    ([("page", "username"), ("page", "email"), ("api", "EMAIL"), ("api", "username"), ("page", "USERNAME")],
     ("page", "email")),
]


@pytest.mark.parametrize(("failures", "then"), GUESSES,
                         ids=["-".join(f"{c}:{i}" for c, i in [*f, t]) for f, t in GUESSES])
def test_failed_log_ins_count_per_account_whichever_identifier_names_it(failures, then):
    """Five wrong passwords for one account, as its username or its email in any case, on the page or
    the API: the account is locked for the window, the right password included, whatever identifier
    and channel come next; another account is not affected."""
    victim, bystander = UserFactory(), UserFactory()
    names = identifiers(victim)
    for channel, identifier in failures:
        wrong = log_in(channel, names[identifier], "guess")
        assert not refused_as_rate_limited(channel, wrong)
    for channel, identifier in [then, *[(c, i) for c in ("page", "api") for i in names]]:
        assert refused_as_rate_limited(channel, log_in(channel, names[identifier], PASSWORD)), (channel, identifier)
        assert refused_as_rate_limited(channel, log_in(channel, names[identifier], "guess")), (channel, identifier)
    assert log_in("api", bystander.email, PASSWORD).status_code == 200
    assert log_in("page", bystander.username, PASSWORD).status_code == 302


def test_the_account_lock_ends_when_the_window_passes(monkeypatch):
    """As allauth does: five failures in five minutes lock the account; after that the right password
    works again, as the username or the email."""
    import allauth.core.internal.ratelimit as allauth_ratelimit

    victim = UserFactory()
    for identifier in ["username", "email", "EMAIL", "username", "email"]:
        log_in("page", identifiers(victim)[identifier], "guess")
    assert refused_as_rate_limited("api", log_in("api", victim.email, PASSWORD))
    real = allauth_ratelimit.time
    monkeypatch.setattr(allauth_ratelimit, "time", type("Later", (), {
        "time": staticmethod(lambda: real.time() + 301), "monotonic": staticmethod(real.monotonic),
        "sleep": staticmethod(real.sleep)}))
    assert log_in("api", victim.email, PASSWORD).status_code == 200
    assert log_in("page", victim.username, PASSWORD).status_code == 302


def test_failures_for_an_unknown_identifier_are_still_limited():
    """No account behind the identifier: allauth's own per-identifier count applies."""
    for _ in range(5):
        assert log_in("api", "nobody@example.org", "guess").status_code == 400
    assert log_in("api", "NOBODY@example.org", "guess").status_code == 429


def test_a_password_reset_lifts_the_account_lock():
    """allauth clears the failed log-ins of the reset email's account: the lock keyed on the account
    follows, so the owner logs in at once with the new password, by username too."""
    import re

    from django.core import mail

    victim = UserFactory()
    for _ in range(5):
        log_in("page", victim.username, "guess")
    owner = Client()
    owner.post("/accounts/password/reset/", {"email": victim.email})
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+/", mail.outbox[-1].body).group(0)
    form_page = owner.get("/" + link.split("://", 1)[1].split("/", 1)[1], follow=True)
    owner.post(form_page.redirect_chain[-1][0], {"password1": "brand-new-pass-77", "password2": "brand-new-pass-77"})
    assert log_in("page", victim.username, "brand-new-pass-77").status_code == 302
