"""A moderator (staff in the moderators group, not a superuser) processes the flagged queue in
the admin, with the keyboard."""

import pytest

from oasst.models import ModerationEvent
from tasks import services
from tasks.models import FlaggedMessage
from tests.factories import PASSWORD, UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

pytestmark = pytest.mark.django_db(transaction=True)


def test_moderator_processes_the_flagged_queue(live_server, page, screenshot, console_errors, tree_settings,
                                               moderators_group):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1)
    moderator = UserFactory(username="mod", is_staff=True)
    moderator.groups.add(moderators_group)
    prompt = write_prompt(UserFactory(), text="Recommend a book.")
    review_of(UserFactory(), prompt)
    services.lottery_activate(lang="en")
    spam = reply_to(UserFactory(username="spammer"), prompt, "Visit my shop for cheap pills")
    fine = reply_to(UserFactory(), prompt, "Try 'The Hobbit'.")
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
    # The newest report comes first: the fine reply. Dismiss it with "d", then delete + ban the spam with "b".
    assert "Hobbit" in first_text
    with page.expect_navigation():  # the decision posts the form; wait for the page it leads to
        page.keyboard.press("d")
    page.locator("#result_list").wait_for()
    assert page.locator("#result_list tbody tr").count() == 1
    with page.expect_navigation():
        page.keyboard.press("b")
    page.get_by_text(": ban.").wait_for()
    spam.refresh_from_db()
    fine.refresh_from_db()
    assert spam.deleted and not fine.deleted
    assert spam.author.__class__.objects.get(username="spammer").is_banned
    assert FlaggedMessage.objects.filter(processed=False).count() == 0
    assert set(ModerationEvent.objects.values_list("action", flat=True)) >= {"flag_dismiss", "flag_ban", "user_ban",
                                                                             "message_delete"}
    assert console_errors == []
