"""A contributor's journey in Chromium: sign up, accept the terms, write a prompt that others
review, reply as the assistant, rank, label, and see points and the leaderboard move."""

import re

import pytest
from django.core import mail

from ranking.services import leaderboard_rebuild
from tasks.models import Message, MessageTree, TreeState
from tests.factories import UserFactory
from tests.tasks.builders import reply_to, review, review_of, write_prompt

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small(tree_settings):
    return tree_settings(goal_tree_size=3, num_reviews_reply=1, num_reviews_initial_prompt=1,
                         num_required_rankings=1, p_full_labeling_review_reply_assistant=0.0)


def take(page, live_server, task_type):
    page.goto(live_server.url + "/dashboard/")
    page.locator(f'button[data-task-type="{task_type}"]').click()
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]+/$"))


def test_full_contributor_journey(live_server, page, screenshot, console_errors, small):
    page.goto(live_server.url + "/")
    screenshot("landing")
    page.get_by_role("link", name="Join as a contributor").click()
    page.get_by_label("Username:").fill("grace")
    page.get_by_label("Email:").fill("grace@example.org")
    page.get_by_label("Password:", exact=True).fill("a-long-pass-phrase-42")
    page.get_by_label("Password (again):").fill("a-long-pass-phrase-42")
    page.get_by_role("button", name="Sign Up").click()
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[-1].body).group(0)
    page.goto(live_server.url + "/" + link.split("://", 1)[1].split("/", 1)[1])
    page.get_by_role("button", name="Confirm").click()

    # The terms gate comes before the first task.
    page.goto(live_server.url + "/dashboard/")
    page.wait_for_url(re.compile(r".*/terms/.*"))
    screenshot("terms")
    page.get_by_label("I accept the terms of service").check()
    page.get_by_role("button", name="Accept and continue").click()
    page.wait_for_url(live_server.url + "/dashboard/")
    screenshot("dashboard")

    # Write a prompt; another contributor reviews it, and the tree grows.
    take(page, live_server, "initial_prompt")
    page.get_by_label("Your text").fill("How do **vaccines** train the immune system?")
    page.get_by_role("button", name="Preview").click()
    page.locator("#preview strong").wait_for()
    screenshot("write-prompt")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Thank you!").wait_for()
    screenshot("done")
    grace = Message.objects.get(text__startswith="How do").author
    review(UserFactory(), "label_initial_prompt")

    # Reply as the assistant to someone else's prompt.
    other_prompt = write_prompt(UserFactory(), text="Why is the sea salty?")
    review(UserFactory(), "label_initial_prompt")
    take(page, live_server, "assistant_reply")
    assert page.get_by_text("Why is the sea salty?").is_visible()
    page.get_by_label("Your text").fill("Rivers carry dissolved minerals into the sea, and evaporation leaves them.")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Thank you!").wait_for()

    # Label a reply in grace's own tree written by someone else.
    grace_prompt = Message.objects.get(text__startswith="How do")
    reply_to(UserFactory(), grace_prompt, "Vaccines show the immune system a harmless piece of a germ.")
    take(page, live_server, "label_assistant_reply")
    screenshot("label")
    page.locator('input[name="label-spam"][value="0"]').check()
    page.locator('input[name="label-lang_mismatch"][value="0"]').check()
    page.locator('input[name="label-quality"][value="1"]').check()
    page.get_by_role("button", name="Submit review").click()
    page.get_by_text("Thank you!").wait_for()

    # Rank the replies to the other prompt (grace's own reply is there: she is not offered it),
    # so rank in a third tree.
    third = write_prompt(UserFactory(), text="What is a black hole?")
    review_of(UserFactory(), third)
    first = reply_to(UserFactory(), third, "A region light cannot leave.")
    second = reply_to(UserFactory(), third, "A dead star.")
    review_of(UserFactory(), first)
    review_of(UserFactory(), second)
    assert MessageTree.objects.get(pk=third.tree_id).state == TreeState.RANKING
    take(page, live_server, "rank_assistant_replies")
    screenshot("rank")
    page.get_by_role("button", name="Submit ranking").click()
    page.get_by_text("Thank you!").wait_for()
    assert MessageTree.objects.get(pk=third.tree_id).state == TreeState.READY_FOR_EXPORT

    # Points and the leaderboard moved.
    page.goto(live_server.url + "/dashboard/")
    total = int(page.locator(".stats .stat").nth(2).inner_text())
    assert total >= 4 + 1 + 1  # an assistant reply, a review, a ranking
    leaderboard_rebuild(frame="total")
    page.goto(live_server.url + "/dashboard/")
    assert page.locator(".stats .stat").nth(4).inner_text().startswith("#")
    assert grace.username == "grace" and other_prompt.tree_id != third.tree_id and first.pk != second.pk
    assert console_errors == []


def test_a_draft_survives_a_reload(live_server, page, small, console_errors):
    user = UserFactory()
    page.context.add_cookies([_session_cookie(live_server, user)])
    take(page, live_server, "initial_prompt")
    page.get_by_label("Your text").fill("A long prompt I do not want to lose")
    page.on("dialog", lambda dialog: dialog.accept())  # the leave-page warning
    page.reload()
    assert page.get_by_label("Your text").input_value() == "A long prompt I do not want to lose"
    assert console_errors == []


def test_ranking_with_the_keyboard_only(live_server, page, small, screenshot, console_errors):
    prompt = write_prompt(UserFactory(), text="Name a colour.")
    review_of(UserFactory(), prompt)
    red, blue = reply_to(UserFactory(), prompt, "Red."), reply_to(UserFactory(), prompt, "Blue.")
    review_of(UserFactory(), red)
    review_of(UserFactory(), blue)
    user = UserFactory()
    page.context.add_cookies([_session_cookie(live_server, user)])
    take(page, live_server, "rank_assistant_replies")
    items = page.locator("ol.ranking > li")
    last_id = items.nth(1).get_attribute("data-id")
    items.nth(1).focus()
    page.keyboard.press("ArrowUp")
    assert items.nth(0).get_attribute("data-id") == last_id
    items.nth(0).focus()
    page.keyboard.press("2")
    assert items.nth(1).get_attribute("data-id") == last_id
    items.nth(1).focus()
    page.keyboard.press("1")
    screenshot("rank-keyboard")
    page.keyboard.press("Tab")
    for _ in range(12):  # tab to the submit button, then Enter
        if page.evaluate("document.activeElement.textContent.trim()") == "Submit ranking":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.get_by_text("Thank you!").wait_for()
    red.refresh_from_db()
    blue.refresh_from_db()
    best = red if str(red.pk) == last_id else blue
    assert best.rank == 0 and prompt.pk
    assert console_errors == []


def _session_cookie(live_server, user) -> dict:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return {"name": settings.SESSION_COOKIE_NAME, "value": session.session_key, "url": live_server.url}
