"""A moderator (staff in the moderators group, not a superuser) processes the flagged queue in
the admin, with the keyboard, and gives a reason for each step (issue 16): a decision in the queue, a
bulk action confirmed on a page that lists the messages, a message's own page; the audit log shows
it. A banned contributor is told so on the dashboard and offered no task."""

import pytest
from django.conf import settings
from django.test import Client

from oasst import moderation as user_moderation
from oasst.models import ModerationEvent
from tasks import services
from tasks.models import FlaggedMessage, Message
from tests.factories import PASSWORD, UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

pytestmark = pytest.mark.django_db(transaction=True)


def queue_keys_ready(page) -> None:
    """The flagged queue's keys work once its script has marked the current row (it runs on DOMContentLoaded)."""
    page.locator("#result_list tbody tr.selected").first.wait_for()


@pytest.fixture
def conversation(tree_settings, moderators_group):
    """A moderator ("mod", in the moderators group), a prompt, a spam reply and a fine one."""
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1)
    moderator = UserFactory(username="mod", is_staff=True)
    moderator.groups.add(moderators_group)
    prompt = write_prompt(UserFactory(), text="Recommend a book.")
    review_of(UserFactory(), prompt)
    services.lottery_activate(lang="en")
    spam = reply_to(UserFactory(username="spammer"), prompt, "Visit my shop for cheap pills")
    fine = reply_to(UserFactory(), prompt, "Try 'The Hobbit'.")
    return moderator, prompt, spam, fine


def test_moderator_processes_the_flagged_queue(live_server, page, screenshot, console_errors, conversation):
    _, _, spam, fine = conversation
    services.message_report(user=UserFactory(), message_id=spam.pk, reason="advertising")
    services.message_report(user=UserFactory(), message_id=fine.pk, reason="too short?")

    page.goto(live_server.url + "/admin/login/")
    page.get_by_label("Username:").fill("mod")
    page.get_by_label("Password:").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Flagged queue").click()
    page.locator("#result_list").wait_for()
    screenshot("admin-flag-queue")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    first_text = rows.nth(0).inner_text()
    # The newest report comes first: the fine reply. Dismiss it with "d", then delete + ban the spam with "b";
    # each key opens the decision's page, which asks for the reason.
    assert "Hobbit" in first_text
    queue_keys_ready(page)
    with page.expect_navigation():
        page.keyboard.press("d")
    page.get_by_label("No rule broken").check()
    page.get_by_role("button", name="Dismiss").click()
    page.locator("#result_list").wait_for()
    assert page.locator("#result_list tbody tr").count() == 1
    queue_keys_ready(page)
    with page.expect_navigation():
        page.keyboard.press("b")
    page.get_by_label("Spam").check()
    page.get_by_role("button", name="Delete the message and ban its author").click()
    page.get_by_text(": ban.").wait_for()
    spam.refresh_from_db()
    fine.refresh_from_db()
    assert spam.deleted and not fine.deleted
    assert spam.author.__class__.objects.get(username="spammer").is_banned
    assert FlaggedMessage.objects.filter(processed=False).count() == 0
    assert set(ModerationEvent.objects.values_list("action", flat=True)) >= {"flag_dismiss", "flag_ban", "user_ban",
                                                                             "message_delete"}
    assert console_errors == []


def log_in(page, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "url": live_server.url,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            }
        ]
    )


def refusals_only(console_errors: list[str], url: str) -> bool:
    """A refused form answers 400, which Chromium also logs; nothing else went wrong."""
    logged = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    return set(console_errors) == {f"400 {url}", logged}


def test_a_moderator_deletes_in_bulk_after_confirming_with_a_reason(
    live_server, page, screenshot, console_errors, conversation
):
    moderator, prompt, spam, fine = conversation
    log_in(page, live_server, moderator)
    page.goto(live_server.url + "/admin/tasks/message/")
    for text in ("Visit my shop", "The Hobbit"):
        page.locator("#result_list tbody tr", has_text=text).locator("input.action-select").check()
    page.locator("select[name=action]").select_option("delete_with_subtree")
    page.get_by_role("button", name="Go").click()
    # Django's delete confirmation, with a reason: the page lists both messages, and nothing is deleted yet.
    page.get_by_role("heading", name="Delete with subtree: 2 selected").wait_for()
    listing = page.locator(".oasst-confirm-list").inner_text()
    assert "Visit my shop" in listing and "The Hobbit" in listing
    assert not Message.objects.filter(deleted=True).exists()
    page.get_by_role("button", name="Delete with subtree").click()
    page.get_by_text("Give a reason: pick one or write it under Details.").wait_for()
    screenshot("admin-bulk-delete-needs-a-reason")
    assert not Message.objects.filter(deleted=True).exists()
    page.get_by_label("Abusive").check()
    page.get_by_label("Details").fill("both from one shop's bot")
    page.get_by_role("button", name="Delete with subtree").click()
    page.get_by_text("2 done.").wait_for()
    assert set(Message.objects.filter(deleted=True).values_list("pk", flat=True)) == {spam.pk, fine.pk}
    page.goto(live_server.url + "/admin/oasst/moderationevent/")
    assert page.locator("#result_list").inner_text().count("abusive: both from one shop's bot") == 2
    assert refusals_only(console_errors, f"{live_server.url}/admin/tasks/message/")


def test_a_moderator_deletes_and_undeletes_a_message_from_its_own_page(
    live_server, page, screenshot, console_errors, conversation
):
    moderator, prompt, spam, fine = conversation
    log_in(page, live_server, moderator)
    page.goto(f"{live_server.url}/admin/tasks/message/{fine.pk}/change/")
    page.get_by_role("link", name="Delete with subtree…").click()
    assert "The Hobbit" in page.locator(".oasst-confirm-list").inner_text()
    page.get_by_label("Personal information").check()
    screenshot("admin-message-delete-reason")
    page.get_by_role("button", name="Delete with subtree").click()
    page.get_by_text("1 done.").wait_for()
    fine.refresh_from_db()
    assert fine.deleted
    page.get_by_role("link", name="Undelete with ancestors…").click()
    page.get_by_label("Other (say which below)").check()
    page.get_by_role("button", name="Undelete with ancestors").click()
    page.get_by_text("Say what the other reason is.").wait_for()
    fine.refresh_from_db()
    assert fine.deleted
    page.get_by_label("Details").fill("a book title, nobody's data")
    page.get_by_role("button", name="Undelete with ancestors").click()
    page.get_by_text("1 done.").wait_for()
    fine.refresh_from_db()
    assert not fine.deleted
    assert list(ModerationEvent.objects.order_by("pk").values_list("action", "reason")) == [
        ("message_delete", "personal information"),
        ("message_undelete", "a book title, nobody's data"),
    ]
    assert refusals_only(console_errors, f"{live_server.url}/admin/tasks/message/{fine.pk}/moderate/undelete/")


def test_a_flag_decision_by_keyboard_asks_for_a_reason(live_server, page, screenshot, console_errors, conversation):
    moderator, prompt, spam, fine = conversation
    services.message_report(user=UserFactory(), message_id=spam.pk, reason="advertising")
    log_in(page, live_server, moderator)
    page.goto(live_server.url + "/admin/")
    page.get_by_role("link", name="Flagged queue").click()
    queue_keys_ready(page)
    with page.expect_navigation():
        page.keyboard.press("x")
    assert "Visit my shop" in page.locator(".oasst-confirm-list").inner_text()
    page.get_by_label("Spam").check()
    page.get_by_label("Details").fill("pharmacy shop")
    screenshot("admin-flag-decision-reason")
    page.get_by_role("button", name="Delete the message").click()
    page.get_by_text(": delete.").wait_for()
    spam.refresh_from_db()
    assert spam.deleted
    assert set(ModerationEvent.objects.values_list("action", "reason")) == {
        ("message_delete", "spam: pharmacy shop"),
        ("flag_delete", "spam: pharmacy shop"),
    }
    assert console_errors == []


def test_a_banned_contributor_is_told_on_the_dashboard(live_server, page, screenshot, console_errors, conversation):
    moderator = conversation[0]
    troll = UserFactory(username="troll")
    user_moderation.user_ban(actor=moderator, user_id=troll.pk, reason="spam")
    log_in(page, live_server, troll)
    page.goto(live_server.url + "/")
    page.get_by_role("alert").get_by_text("Your account is banned from contributing.").wait_for()
    screenshot("dashboard-banned")
    assert page.get_by_role("button", name="Give me a task").count() == 0
    assert page.locator("button.task-type").count() == 0
    assert console_errors == []
