"""Characters that do not belong in text (issue 21, findings 7 and 10), sent as an attacker would,
through every page form and API route that takes text.

- NUL and the other control characters (all but tab, newline and carriage return) are refused by
  the services with a clear error, so pages and API alike answer 4xx and store nothing; a NUL used
  to reach PostgreSQL (a 500) or be stored (SQLite) through the pages.
- Names (display names, usernames) need a visible character and may not carry characters that
  turn the direction of the text around them.
- Message texts keep such characters as written, but pages show them as visible, inert markers.
"""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from oasst import moderation as user_moderation
from oasst import services as account_services
from oasst.errors import ServiceError
from oasst.models import ModerationEvent, User
from ranking.models import LeaderboardEntry
from tasks import services
from tasks.models import EmojiReaction, FlaggedMessage, Message, Review, Task
from tests.conftest import token_client
from tests.factories import AdminFactory, UserFactory
from tests.tasks.builders import growing_conversation, open_task, write_prompt

CONTROL_CHARACTERS = ["\x00", "\x07", "\x1b", "\x7f", "\x85"]
TEXT_TASKS = ["initial_prompt", "assistant_reply", "prompter_reply"]
LABEL_TASKS = ["label_initial_prompt", "label_assistant_reply", "label_prompter_reply"]
INVISIBLE_NAMES = ["\u200b", " \u200b ", "\u200b\u200c\u200d", "\ufeff", "\u2060", "\u0301", "\u0301\u0302",
                   "\u3164", "\u2800", "\u202e", "\u00ad"]
DIRECTION_NAMES = ["\u202eevil", "Ada\u202e", "Ada\u2066x\u2069", "Ada\u200f", "\u202dBob"]


@pytest.fixture
def world(db, tree_settings):
    """A growing tree (prompt, assistant reply, user reply) and a contributor who may work on it."""
    tree_settings(goal_tree_size=10, num_reviews_reply=1, num_reviews_initial_prompt=1, num_required_rankings=1)
    author, reviewer = UserFactory(), UserFactory()
    prompt, assistant, prompter = growing_conversation(author, reviewer)
    contributor = UserFactory()
    client = Client()
    client.force_login(contributor)
    return {"contributor": contributor, "client": client, "prompt": prompt, "assistant": assistant,
            "prompter": prompter}


def task_for(world, task_type: str) -> Task:
    """An open task of the type for the contributor, on the world's tree."""
    user = world["contributor"]
    if task_type == "initial_prompt":
        return services.task_request(user=user, task_type=task_type, lang="en")
    if task_type == "assistant_reply":
        return open_task(user, task_type, world["prompter"])
    if task_type == "prompter_reply":
        return open_task(user, task_type, world["assistant"])
    if task_type in LABEL_TASKS:
        item = {"label_initial_prompt": world["prompt"], "label_assistant_reply": world["assistant"],
                "label_prompter_reply": world["prompter"]}[task_type]
        return open_task(user, task_type, item, valid_labels=["spam", "lang_mismatch", "quality"],
                         mandatory_labels=["spam"], mode="simple")
    return open_task(user, task_type, world["prompt"],
                     reply_messages=[{"id": str(world["assistant"].pk), "text": "x"}])


def stored_state(user: User) -> dict:
    """What a refused request must leave as it was."""
    user.refresh_from_db()
    return {
        "messages": Message.objects.count(), "reviews": Review.objects.count(),
        "reports": sorted(FlaggedMessage.objects.values_list("reports", flat=True)),
        "tasks": sorted(Task.objects.values_list("pk", "skipped", "skip_reason", "done")),
        "user": (user.username, user.display_name, user.preferred_language, user.show_on_leaderboard),
        "users": User.objects.count(), "moderation": ModerationEvent.objects.count(),
    }


def _refused(response, before: dict, user: User, *, mentions: str = "") -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert stored_state(user) == before
    if mentions:
        assert mentions in response.content.decode()


# --- Finding 7: control characters through every page form -------------------------------------------


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
@pytest.mark.parametrize("task_type", TEXT_TASKS)
def test_control_character_in_a_submitted_text_is_refused_on_the_page(world, task_type, character):
    task = task_for(world, task_type)
    before = stored_state(world["contributor"])
    response = world["client"].post(reverse("task-submit", args=[task.pk]), {"text": f"Why{character}is it so?"})
    _refused(response, before, world["contributor"], mentions="control character")


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
@pytest.mark.parametrize("task_type", LABEL_TASKS)
def test_control_character_in_a_review_comment_is_refused_on_the_page(world, task_type, character):
    task = task_for(world, task_type)
    before = stored_state(world["contributor"])
    response = world["client"].post(reverse("task-submit", args=[task.pk]),
                                    {"label-spam": "0", "comment": f"Fi{character}ne"})
    _refused(response, before, world["contributor"], mentions="control character")


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
@pytest.mark.parametrize("task_type", ["rank_assistant_replies", "rank_prompter_replies"])
def test_control_character_in_a_ranking_is_refused_on_the_page(world, task_type, character):
    task = task_for(world, task_type)
    before = stored_state(world["contributor"])
    response = world["client"].post(reverse("task-submit", args=[task.pk]),
                                    {"ranking": [f"{world['assistant'].pk}{character}"]})
    _refused(response, before, world["contributor"])


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
def test_control_character_in_a_skip_reason_is_refused_on_the_page(world, character):
    task = task_for(world, "initial_prompt")
    before = stored_state(world["contributor"])
    response = world["client"].post(reverse("task-skip", args=[task.pk]), {"reason": f"un{character}clear"})
    _refused(response, before, world["contributor"], mentions="control character")


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
def test_control_character_in_a_report_reason_is_refused_on_the_page(world, character):
    before = stored_state(world["contributor"])
    response = world["client"].post(reverse("message-report", args=[world["assistant"].pk]),
                                    {"reason": f"ru{character}de"})
    _refused(response, before, world["contributor"], mentions="control character")


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
def test_control_character_in_a_display_name_is_refused_on_the_page(world, character):
    before = stored_state(world["contributor"])
    response = world["client"].post(reverse("profile-settings"), {
        "display_name": f"A{character}da", "preferred_language": "en", "show_on_leaderboard": "on"})
    _refused(response, before, world["contributor"])
    assert "not allowed" in response.content.decode()


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
@pytest.mark.parametrize(("name", "data"), [
    ("profile-delete", {"username": "{c}"}), ("profile-token", {"action": "rotate{c}"}),
    ("task-new", {"type": "initial_prompt{c}"}), ("language", {"lang": "en{c}", "next": "/{c}"}),
    ("terms", {"accept": "on", "next": "/dashboard/{c}"}), ("preview", {"text": "a{c}b"}),
    ("lang-check", {"text": "{c}" * 40, "lang": "en{c}"}),
])
def test_control_characters_in_other_page_forms_never_cause_a_server_error(world, name, data, character):
    before = stored_state(world["contributor"])
    data = {key: value.replace("{c}", character) for key, value in data.items()}
    response = world["client"].post(reverse(name), data)
    assert response.status_code < 500
    if response.status_code >= 400:
        assert stored_state(world["contributor"]) == before


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
def test_control_character_in_an_emoji_is_refused_on_the_page(world, character):
    response = world["client"].post(reverse("message-emoji", args=[world["assistant"].pk]),
                                    {"emoji": f"+1{character}", "op": "add"}, HTTP_HX_REQUEST="true")
    assert 400 <= response.status_code < 500
    assert not EmojiReaction.objects.exists()


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
def test_control_character_in_a_username_is_refused_at_sign_up(db, character):
    response = Client().post("/accounts/signup/", {
        "username": f"new{character}bie", "email": "newbie@example.org",
        "password1": "a-long-pass-phrase-42", "password2": "a-long-pass-phrase-42"})
    assert response.status_code < 500
    assert not User.objects.filter(email="newbie@example.org").exists()


# --- Finding 7: the API and the services refuse the same characters ----------------------------------


@pytest.mark.parametrize("character", ["\x07", "\x1b", "\x7f", "\x85", "\ud800"], ids=repr)
def test_control_characters_sent_to_the_api_are_refused(world, character):
    contributor = world["contributor"]
    api = token_client(contributor)

    def post(url, data):  # JSON with \u escapes: a lone surrogate cannot be sent as UTF-8
        return api.post(url, json.dumps(data), content_type="application/json")

    task = task_for(world, "initial_prompt")
    before = stored_state(contributor)
    submit = post(f"/api/v1/tasks/{task.pk}/submit/", {"text": f"H{character}i"})
    assert submit.status_code == 400, submit.content  # DRF refuses NUL and surrogates itself, the service the rest
    assert "not allowed" in submit.json()["detail"]
    client_id = post(f"/api/v1/tasks/{task.pk}/submit/", {"text": "Hi", "client_id": f"c{character}c"})
    assert client_id.status_code == 400
    nack = post(f"/api/v1/tasks/{task.pk}/nack/", {"reason": f"n{character}o"})
    assert nack.status_code == 400
    report = post(f"/api/v1/messages/{world['assistant'].pk}/report/", {"reason": f"ru{character}de"})
    assert report.status_code == 400
    label_task = task_for(world, "label_assistant_reply")
    before = stored_state(contributor)
    comment = post(f"/api/v1/tasks/{label_task.pk}/submit/", {"labels": {"spam": 0}, "text": f"o{character}k"})
    assert comment.status_code == 400 and "not allowed" in comment.json()["detail"], comment.content
    assert stored_state(contributor) == before


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
def test_control_characters_in_moderation_reasons_and_edits_are_refused(world, moderators_group, character):
    moderator = UserFactory(is_staff=True)
    moderator.groups.add(moderators_group)
    api = token_client(moderator)
    message = world["assistant"]
    before = stored_state(world["contributor"])
    for action in ("delete", "flag", "spam"):
        response = api.post(f"/api/v1/moderation/messages/{message.pk}/{action}/", {"reason": f"x{character}x"},
                            format="json")
        assert response.status_code == 400, (action, response.content)
    edit = api.post(f"/api/v1/moderation/messages/{message.pk}/edit/", {"text": f"ne{character}w", "reason": "typo"},
                    format="json")
    assert edit.status_code == 400
    assert stored_state(world["contributor"]) == before
    client = Client()
    client.force_login(moderator)
    flag = services.message_report(user=world["contributor"], message_id=message.pk, reason="rude")
    client.post(reverse("admin:tasks_flaggedmessage_resolve", args=[flag.pk, "delete"]), {"reason": f"x{character}x"})
    message.refresh_from_db()
    assert message.deleted is False
    assert not ModerationEvent.objects.exists()
    with pytest.raises(ServiceError):
        user_moderation.user_ban(actor=moderator, user_id=world["contributor"].pk, reason=f"x{character}x")
    with pytest.raises(ServiceError):
        services.flag_resolve(actor=moderator, flag_id=flag.pk, decision="dismiss", reason=f"x{character}x")


def test_tabs_newlines_and_carriage_returns_are_kept(world):
    task = task_for(world, "initial_prompt")
    response = world["client"].post(reverse("task-submit", args=[task.pk]), {"text": "Line one\r\n\tLine two"})
    assert response.status_code == 302
    assert Message.objects.get(author=world["contributor"]).text == "Line one\r\n\tLine two"


# --- Finding 10: names need a visible character and keep their direction ------------------------------


@pytest.mark.parametrize("name", INVISIBLE_NAMES + DIRECTION_NAMES, ids=repr)
def test_invisible_or_direction_changing_display_name_is_refused_on_the_page(world, name):
    before = stored_state(world["contributor"])
    response = world["client"].post(reverse("profile-settings"), {
        "display_name": name, "preferred_language": "en", "show_on_leaderboard": "on"})
    _refused(response, before, world["contributor"])
    content = response.content.decode()
    assert "visible character" in content or "direction" in content, content


@pytest.mark.parametrize("name", ["Zoë", "Ã\u0301da", "\u0639\u0644\u064a", "👩\u200d💻 Ada", "Ada\u200cx", "李雷"])
def test_names_in_any_script_with_joiners_and_marks_are_accepted(world, name):
    response = world["client"].post(reverse("profile-settings"), {
        "display_name": name, "preferred_language": "en", "show_on_leaderboard": "on"})
    assert response.status_code == 302
    world["contributor"].refresh_from_db()
    assert world["contributor"].display_name == name


@pytest.mark.parametrize("name", INVISIBLE_NAMES + DIRECTION_NAMES, ids=repr)
def test_services_refuse_invisible_or_direction_changing_display_names(world, name):
    with pytest.raises(ServiceError) as refusal:
        account_services.profile_update(user=world["contributor"], display_name=name, preferred_language="en",
                                        show_on_leaderboard=True)
    assert refusal.value.code in {"invalid_display_name", "empty_display_name"}


@pytest.mark.parametrize("username", ["\u3164", "\u3164\u3164", "ab\u202ecd", "\u2800"], ids=repr)
def test_sign_up_refuses_an_invisible_or_direction_changing_username(db, username):
    response = Client().post("/accounts/signup/", {
        "username": username, "email": "newbie@example.org",
        "password1": "a-long-pass-phrase-42", "password2": "a-long-pass-phrase-42"})
    assert response.status_code == 200  # the form again, with its error
    assert not User.objects.filter(email="newbie@example.org").exists()
    content = response.content.decode()
    assert "visible character" in content or "direction" in content or "Enter a valid username" in content


def test_moderator_cannot_give_a_user_an_invisible_name_in_the_admin(world):
    admin = AdminFactory()
    client = Client()
    client.force_login(admin)
    target = world["contributor"]
    url = reverse("admin:oasst_user_change", args=[target.pk])
    form = client.get(url).context["adminform"].form
    data = {key: value for key, value in form.initial.items() if value is not None and not isinstance(value, list)}
    data |= {"username": target.username, "display_name": "\u202e", "date_joined_0": "2024-01-01",
             "date_joined_1": "00:00:00", "preferred_language": "en"}
    before = stored_state(target)
    response = client.post(url, data)
    assert response.status_code == 200  # the form again, with its error
    assert stored_state(target) == before


# --- Finding 10: message texts keep such characters, shown visible and inert --------------------------


OVERRIDE_TEXT = "Pay to \u202egnp.exe\u202c now, \u200bhidden and &#x202E;entity"


@pytest.fixture
def override_world(world):
    task = task_for(world, "assistant_reply")
    api = token_client(world["contributor"])
    response = api.post(f"/api/v1/tasks/{task.pk}/submit/", {"text": OVERRIDE_TEXT}, format="json")
    assert response.status_code == 201, response.content
    message = Message.objects.get(pk=response.json()["id"])
    assert message.text == OVERRIDE_TEXT  # stored as written
    return world | {"message": message}


def _assert_marked(content: str) -> None:
    for character in "\u202e\u202c\u200b":
        assert character not in content
    assert '<span class="control-char" title="U+202E RIGHT-TO-LEFT OVERRIDE">' in content
    assert "[U+202E]" in content and "[U+200B]" in content


def test_message_with_a_direction_override_renders_visible_markers(override_world):
    client = override_world["client"]
    tree_page = client.get(reverse("message-tree", args=[override_world["message"].pk])).content.decode()
    _assert_marked(tree_page)
    assert tree_page.count("[U+202E]") >= 2  # the entity is decoded by Markdown, and marked too
    assert 'dir="auto"' in tree_page


def test_texts_shown_without_markdown_mark_the_characters_too(override_world):
    client = override_world["client"]
    results = client.get(reverse("messages"), {"q": "Pay"}).content.decode()
    _assert_marked(results)
    contributions = client.get(reverse("profile")).content.decode()
    _assert_marked(contributions)
    task = task_for(override_world, "label_assistant_reply")
    task.payload["conversation"] = [{"role": "assistant", "text": OVERRIDE_TEXT}]
    task.save(update_fields=["payload"])
    _assert_marked(client.get(reverse("task", args=[task.pk])).content.decode())


def test_admin_shows_the_characters_marked(override_world):
    client = Client()
    client.force_login(AdminFactory())
    message = override_world["message"]
    services.message_report(user=override_world["contributor"], message_id=message.pk, reason="odd \u202ereason")
    for url in (reverse("admin:tasks_message_changelist"), reverse("admin:tasks_flaggedmessage_changelist"),
                reverse("admin:tasks_message_change", args=[message.pk])):
        content = client.get(url, follow=True).content.decode()
        shown = re.sub(r"<textarea.*?</textarea>", "", content, flags=re.S)  # the edit field keeps the text as is
        assert "\u202e" not in shown, url
        assert "[U+202E]" in shown, url


def test_legacy_display_name_with_an_override_is_shown_inert(world):
    legacy = UserFactory()
    User.objects.filter(pk=legacy.pk).update(display_name="\u202eevil")  # stored before names were checked
    write_prompt(legacy, text="What is rain?")
    LeaderboardEntry.objects.create(frame="total", rank=1, user=legacy, score=100, level=1, built_at=timezone.now())
    client = world["client"]
    leaderboard = client.get(reverse("leaderboard-frame", args=["total"])).content.decode()
    assert "\u202e" not in leaderboard
    assert "[U+202E]</span>evil</bdi>" in leaderboard  # the table
    assert "1. [U+202E]evil</text>" in leaderboard  # the SVG chart
    assert "\u202e" not in client.get(reverse("messages")).content.decode()
    client.force_login(User.objects.get(pk=legacy.pk))
    assert "\u202e" not in client.get(reverse("profile")).content.decode()


@pytest.mark.parametrize("character", ["\x00", "\x1f", "\x9f", "\ud800", "\udfff"], ids=repr)
def test_services_refuse_control_characters_and_lone_surrogates_whoever_calls_them(world, character):
    task = task_for(world, "initial_prompt")
    with pytest.raises(ServiceError) as refusal:
        services.text_submit(user=world["contributor"], task_id=task.pk, text=f"a{character}b")
    assert refusal.value.code == "invalid_text"
    assert "which is not allowed" in refusal.value.messages[0]
    with pytest.raises(ServiceError):
        services.task_nack(user=world["contributor"], task_id=task.pk, reason=f"a{character}b")
    assert not Message.objects.filter(author=world["contributor"]).exists()


def test_markers_and_direction_isolation_are_styled_by_the_stylesheets_not_inline():
    from pathlib import Path

    static = Path(__file__).resolve().parents[2] / "oasst" / "static" / "oasst"
    site, admin = (static / "site.css").read_text(), (static / "admin.css").read_text()
    assert ".control-char" in site and ".control-char" in admin
    assert re.search(r"\.md[^{]*\{[^}]*unicode-bidi: isolate", site)
    assert re.search(r"\.oasst-text \{[^}]*unicode-bidi: isolate", admin)
