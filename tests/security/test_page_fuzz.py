"""Property-based fuzzing of every page form, as tests/security/test_fuzz.py fuzzes the API (issue 21,
finding 7: a NUL in a page form was a 500 on PostgreSQL and stored on SQLite).

Each form of the site is posted (or, for a search form, sent as a query string) with Hypothesis
drawing each field either as a valid value or as arbitrary text: any Unicode but lone surrogates
(a request cannot carry them), NUL and the other control characters, direction overrides and
isolates, invisible characters, escapes that look like them, and very long text. For every example:

- the answer is never a server error;
- a refusal (4xx) changes nothing stored;
- nothing stored holds a control character, and no name stored lacks a visible character or
  holds a direction control.

Every example runs in a savepoint that is rolled back, so each starts from the same world; the
rate limits' counters are cleared before each. Derandomized, with a few examples per field, so the
run is the same everywhere and short. `test_every_page_route_is_fuzzed_or_takes_no_text` keeps the
list of forms complete: a new page route fails it until it is fuzzed here or said to take no text.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oasst.errors import ServiceError
from oasst.models import ModerationEvent, User
from oasst.text import clean_name
from ranking.models import Ranking
from tasks import services
from tasks.models import EmojiReaction, FlaggedMessage, Message, Review, Task
from tests.factories import PASSWORD, UserFactory
from tests.tasks.builders import growing_conversation, open_task, write_prompt

EXAMPLES_PER_FORM = 30
REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
SPECIAL = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\x9f", "\t", "\r\n", "\u200b", "\u200d",
           "\u200e", "\u202a", "\u202e", "\u2066", "\u2069", "\u061c", "\ufeff", "\u3164", "\u2800", "\u0301",
           "\U000e0041", "\ufffd", "\uffff", "\U0010ffff", "%00", "\\x00", "\\u0000", "&#0;", "&#x202E;",
           "<script>", "' OR '1'='1", "../", "😀", "a", " "]
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.lists(st.sampled_from(SPECIAL), max_size=12).map("".join),
    st.builds(operator.mul, st.sampled_from(["a", "\x00", "\u202e", "é", "😀"]), st.integers(1_000, 30_000)),
)


@dataclass
class PageForm:
    url: str
    fields: dict  # field -> a valid value (a list for a field sent several times)
    as_user: str = "contributor"  # contributor, moderator or anonymous
    method: str = "post"
    htmx: bool = False
    lists: set = field(default_factory=set)


# Page routes whose views read no text from the request besides what the fuzzed forms cover.
WITHOUT_TEXT = {
    "": "the landing page, GET only",
    "dashboard/": "GET only", "dashboard/available/": "GET only", "tasks/<uuid:task_id>/": "GET only",
    "tasks/<uuid:task_id>/done/": "GET only",
    "messages/<uuid:message_id>/": "GET only", "favicon.ico": "a redirect", "profile/": "GET (show, page: choices)",
    "profile/data/": "GET only", "profile/logout-everywhere/": "a button without fields",
    "leaderboard/": "GET (page: a number)", "leaderboard/<slug:frame>/": "GET (page: a number)",
    "accounts/logout/": "a button without fields", "accounts/inactive/": "GET only",
    "accounts/confirm-email/": "GET only", "accounts/password/set/": "only for accounts without a password",
    "accounts/login/code/confirm/": "login by code is off",
    "accounts/^confirm-email/(?P<key>[-:\\w]+)/$": "a key in the path: tests/oasst/test_accounts.py",
    "accounts/password/reset/key/done/": "GET only",
    "accounts/^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$": "a key in the path: test_accounts.py",
    "accounts/password/reset/done/": "GET only",
    "accounts/3rdparty/login/cancelled/": "GET only", "accounts/3rdparty/login/error/": "GET only",
    "accounts/3rdparty/signup/": "only within a social log-in", "accounts/3rdparty/": "social accounts: none here",
    "accounts/social/login/cancelled/": "GET only", "accounts/social/login/error/": "GET only",
    "accounts/social/signup/": "only within a social log-in", "accounts/social/connections/": "none here",
}
FUZZED_ROUTES = {
    "tasks/<uuid:task_id>/submit/", "tasks/<uuid:task_id>/skip/", "tasks/new/", "messages/<uuid:message_id>/report/",
    "messages/<uuid:message_id>/emoji/", "messages/", "terms/", "language/", "i18n/setlang/", "preview/", "lang-check/",
    "profile/settings/", "profile/token/", "profile/delete/", "accounts/login/", "accounts/signup/",
    "accounts/reauthenticate/", "accounts/email/", "accounts/password/change/", "accounts/password/reset/",
}


def _world() -> dict:
    """A growing tree (prompt, assistant reply, user reply) with a flag, a contributor and a moderator."""
    from django.contrib.auth.models import Group

    author, reviewer = UserFactory(), UserFactory()
    unreviewed = write_prompt(reviewer, text="What is rain?")
    prompt, assistant, prompter = growing_conversation(author, reviewer)
    contributor = UserFactory()
    moderator = UserFactory(is_staff=True)
    moderator.groups.add(Group.objects.get(name="moderators"))
    flag = services.message_report(user=author, message_id=assistant.pk, reason="rude")
    return {"contributor": contributor, "moderator": moderator, "prompt": prompt, "unreviewed": unreviewed,
            "assistant": assistant,
            "prompter": prompter, "flag": flag}


def _task(world, task_type: str) -> Task:
    user = world["contributor"]
    if task_type == "initial_prompt":
        return services.task_request(user=user, task_type=task_type, lang="en")
    if task_type.startswith("label_"):
        item = {"label_initial_prompt": world["unreviewed"], "label_assistant_reply": world["assistant"],
                "label_prompter_reply": world["prompter"]}[task_type]
        return open_task(user, task_type, item, valid_labels=["spam", "lang_mismatch", "quality"],
                         mandatory_labels=["spam"], mode="simple")
    if task_type.startswith("rank_"):
        return open_task(user, task_type, world["prompt"], reply_messages=[{"id": str(world["assistant"].pk)}])
    return open_task(user, task_type, {"assistant_reply": world["prompter"], "prompter_reply": world["assistant"]}
                     [task_type])


def page_form(world, name: str) -> PageForm:
    """A form of the site, with valid values for its fields (a task form makes its task)."""
    kind, _, task_type = name.partition(" ")
    if kind == "submit":
        url = reverse("task-submit", args=[_task(world, task_type).pk])
        if task_type.startswith("label_"):
            return PageForm(url, {"label-spam": "0", "label-lang_mismatch": "0", "label-quality": "0.5",
                                  "comment": "Fine.", "report": "on"})
        if task_type.startswith("rank_"):
            return PageForm(url, {"ranking": [str(world["assistant"].pk)], "not_rankable": ""}, lists={"ranking"})
        return PageForm(url, {"text": "Why is the sky blue?"})
    if name == "skip":
        return PageForm(reverse("task-skip", args=[_task(world, "initial_prompt").pk]), {"reason": "unclear"})
    email = world["contributor"].email
    return {
        "new task": PageForm(reverse("task-new"), {"type": "initial_prompt"}),
        "report": PageForm(reverse("message-report", args=[world["assistant"].pk]), {"reason": "rude"}),
        "emoji": PageForm(reverse("message-emoji", args=[world["prompter"].pk]),
                          {"emoji": "+1", "op": "add", "add_emoji": "+1"}, htmx=True),
        "search": PageForm(reverse("messages"), {"q": "tides", "lang": "en", "role": "assistant", "review": "all",
                                                 "page": "1"}, method="get"),
        "terms": PageForm(reverse("terms"), {"accept": "on", "next": "/dashboard/"}),
        "language": PageForm(reverse("language"), {"lang": "de", "next": "/dashboard/"}),
        "interface language": PageForm(reverse("set_language"), {"language": "de", "next": "/dashboard/"}),
        "preview": PageForm(reverse("preview"), {"text": "**bold**"}),
        "lang check": PageForm(reverse("lang-check"), {"text": "The moon pulls the oceans twice a day.", "lang": "en"}),
        "profile settings": PageForm(reverse("profile-settings"), {
            "display_name": "Ada", "preferred_language": "en", "show_on_leaderboard": "on"}),
        "token": PageForm(reverse("profile-token"), {"action": "rotate"}),
        "delete account": PageForm(reverse("profile-delete"), {"username": "someone else"}),
        "login": PageForm(reverse("account_login"), {"login": world["contributor"].username, "password": "wrong"},
                          as_user="anonymous"),
        "signup": PageForm(reverse("account_signup"), {
            "username": "newbie", "email": "newbie@example.org", "password1": "a-long-pass-phrase-42",
            "password2": "a-long-pass-phrase-42"}, as_user="anonymous"),
        "password reset": PageForm(reverse("account_reset_password"), {"email": email}, as_user="anonymous"),
        "reauthenticate": PageForm(reverse("account_reauthenticate"), {"password": PASSWORD}),
        "add email": PageForm(reverse("account_email"), {"email": "second@example.org", "action_add": ""}),
        "password change": PageForm(reverse("account_change_password"), {
            "oldpassword": PASSWORD, "password1": "another-long-phrase-7", "password2": "another-long-phrase-7"}),
        "moderator resolves a flag": PageForm(
            reverse("admin:tasks_flaggedmessage_resolve", args=[world["flag"].pk, "dismiss"]),
            {"reason": "fine", "next": "/admin/"}, as_user="moderator"),
    }[name]


FORM_NAMES = [
    *(f"submit {t}" for t in ("initial_prompt", "assistant_reply", "prompter_reply", "label_initial_prompt",
                              "label_assistant_reply", "label_prompter_reply", "rank_assistant_replies",
                              "rank_prompter_replies")),
    "skip", "new task", "report", "emoji", "search", "terms", "language", "interface language", "preview",
    "lang check", "profile settings",
    "token", "delete account", "login", "signup", "password reset", "reauthenticate", "add email", "password change",
    "moderator resolves a flag",
]


def stored_state() -> tuple:
    """What a refused request must leave as it was (sessions and the rate limits' counters aside)."""
    return (
        sorted(Message.objects.values_list("pk", "text", "deleted", "review_result")),
        sorted(Review.objects.values_list("pk", "text")), Ranking.objects.count(),
        sorted(FlaggedMessage.objects.values_list("pk", "reports", "processed")),
        sorted(EmojiReaction.objects.values_list("pk", flat=True)),
        sorted(Task.objects.values_list("pk", "skipped", "skip_reason", "done")),
        sorted(User.objects.values_list("pk", "username", "email", "display_name", "preferred_language", "ui_language",
                                        "show_on_leaderboard", "is_active", "password", "tos_accepted_at")),
        ModerationEvent.objects.count(),
    )


def check_stored_texts() -> None:
    texts = [*Message.objects.values_list("text", flat=True), *Review.objects.values_list("text", flat=True),
             *Task.objects.values_list("skip_reason", flat=True),
             *ModerationEvent.objects.values_list("reason", flat=True)]
    texts += [reason for reasons in FlaggedMessage.objects.values_list("reasons", flat=True) for reason in reasons]
    for text in texts:
        assert not REFUSED.search(text), f"stored with a control character: {text!r}"
    for username, display_name in User.objects.values_list("username", "display_name"):
        for name in filter(None, (username, display_name)):
            try:
                clean_name(name, what="name", code="invalid_name", empty_code="invisible_name")
            except ServiceError as error:
                raise AssertionError(f"stored name {name!r}: {error.messages[0]}") from None


@st.composite
def form_data(draw, form: PageForm) -> dict:
    """One or two fields fuzzed, the others valid, so that the fuzzed value reaches the code behind them."""
    fuzzed = draw(st.sets(st.sampled_from(sorted(form.fields)), min_size=1, max_size=2))
    data = {}
    for name, valid in form.fields.items():
        if name not in fuzzed:
            data[name] = valid
        elif name in form.lists:
            data[name] = draw(st.lists(st.one_of(st.sampled_from(valid), TEXT), max_size=4))
        else:
            data[name] = draw(TEXT)
    return data


def _send(client: Client, form: PageForm, data: dict):
    headers = {"HTTP_HX_REQUEST": "true"} if form.htmx else {}
    if form.method == "get":
        return client.get(form.url, data, **headers)
    return client.post(form.url, data, **headers)


@pytest.mark.parametrize("name", FORM_NAMES)
def test_page_form_never_fails_and_refusals_change_nothing(db, tree_settings, moderators_group, name):
    tree_settings(goal_tree_size=10, num_reviews_reply=1, num_reviews_initial_prompt=1, num_required_rankings=1)
    world = _world()
    form = page_form(world, name)
    client = Client()
    if form.as_user != "anonymous":
        client.force_login(world[form.as_user])
    sent = []

    @settings(max_examples=EXAMPLES_PER_FORM, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=form_data(form))
    def run(data):
        cache.clear()
        with transaction.atomic():
            before = stored_state()
            response = _send(client, form, data)
            sent.append(response.status_code)
            assert response.status_code < 500, (response.status_code, data)
            if 400 <= response.status_code < 500:
                assert stored_state() == before, (response.status_code, data)
            check_stored_texts()
            transaction.set_rollback(True)

    run()
    assert len(sent) >= EXAMPLES_PER_FORM // 2


def _page_routes(resolver=None, prefix: str = "") -> list[str]:
    routes = []
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            routes += _page_routes(pattern, prefix + str(pattern.pattern))
        else:
            assert isinstance(pattern, URLPattern)
            routes.append(prefix + str(pattern.pattern))
    return [route for route in routes if not route.startswith(("admin/", "api/"))]


def test_every_page_route_is_fuzzed_or_takes_no_text(db, tree_settings, moderators_group):
    routes = set(_page_routes())
    assert not set(WITHOUT_TEXT) & FUZZED_ROUTES
    missing = sorted(routes - set(WITHOUT_TEXT) - FUZZED_ROUTES)
    assert not missing, f"page routes neither fuzzed nor listed as taking no text: {missing}"
    assert not (set(WITHOUT_TEXT) | FUZZED_ROUTES) - routes, "stale routes in the lists"
    tree_settings(goal_tree_size=10, num_reviews_reply=1, num_reviews_initial_prompt=1, num_required_rankings=1)
    world = _world()
    urls = []
    for name in FORM_NAMES:
        with transaction.atomic():  # one open task per item and user: each form's task is rolled back
            urls.append(page_form(world, name).url)
            transaction.set_rollback(True)
    fuzzed = {route for route in FUZZED_ROUTES for url in urls
              if re.fullmatch(re.sub(r"<uuid:\w+>", "[0-9a-f-]{36}", route), url.removeprefix("/"))}
    assert fuzzed == FUZZED_ROUTES


# Regressions for what the fuzzer found.


@pytest.mark.parametrize("url_name", ["terms", "language", "interface language", "moderator resolves a flag"])
def test_a_next_url_that_reads_as_a_view_name_redirects_to_it_as_a_url(db, tree_settings, moderators_group,
                                                                      url_name):
    tree_settings(goal_tree_size=10, num_reviews_reply=1, num_reviews_initial_prompt=1, num_required_rankings=1)
    world = _world()
    form = page_form(world, url_name)
    client = Client()
    client.force_login(world[form.as_user])
    response = client.post(form.url, form.fields | {"next": "0"})  # redirect("0") tried to reverse a view "0"
    assert response.status_code == 302 and response["Location"] == "0"


def test_an_overlong_login_is_refused_not_a_server_error(db):
    UserFactory()  # SQLite compiles the LIKE pattern on the first row it compares: "pattern too complex"
    response = Client().post(reverse("account_login"), {"login": "a" * 60_000, "password": "x"})
    assert response.status_code == 200  # the form again, with its error (SQLite: "LIKE pattern too complex")
    assert "login" in response.context["form"].errors
