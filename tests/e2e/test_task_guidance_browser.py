"""Task pages that teach the job, in Chromium: the guideline panel that stays as it was left, what each
review label means, keys that answer the review (never while typing), the session's progress strip,
the note that submissions are final, and review choices big enough for a thumb."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from ranking.models import ContributionEvent
from tasks.models import Review
from tests.e2e.test_contributor_flow import _session_cookie
from tests.factories import UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reply_to_review(tree_settings):
    """A reviewed prompt with an assistant reply waiting for a full review, and a prompt to answer."""
    tree_settings(
        goal_tree_size=6,
        num_reviews_reply=1,
        num_reviews_initial_prompt=1,
        num_required_rankings=1,
        p_full_labeling_review_reply_assistant=1.0,
    )
    prompt = write_prompt(UserFactory(), text="Plan a weekend in Rome.")
    review_of(UserFactory(), prompt)
    reply_to(UserFactory(), prompt, "Day one: the Colosseum. Day two: the Vatican.")
    return prompt


def log_in(page, live_server):
    user = UserFactory()
    page.context.add_cookies([_session_cookie(live_server, user)])
    return user


def open_task(page, live_server, task_type):
    page.goto(live_server.url + "/dashboard/")
    page.locator(f'button[data-task-type="{task_type}"]').click()
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]+/$"))


def radio(page, label, value):
    return page.locator(f'input[name="label-{label}"][value="{value}"]')


def test_the_guideline_panel_opens_closes_and_stays_as_it_was_left(live_server, page, reply_to_review, console_errors):
    log_in(page, live_server)
    open_task(page, live_server, "assistant_reply")
    panel = page.locator("details.guidelines")
    assert panel.get_attribute("open") is not None  # a newcomer sees it first
    assert panel.get_by_text("Good example").is_visible() and panel.get_by_text("Bad example").is_visible()
    panel.locator("summary").click()
    assert panel.get_attribute("open") is None
    page.reload()
    assert page.locator("details.guidelines").get_attribute("open") is None
    assert not page.get_by_text("Good example").is_visible()
    page.locator("details.guidelines summary").click()
    assert page.get_by_text("Good example").is_visible()
    page.reload()
    assert page.locator("details.guidelines").get_attribute("open") is not None
    assert page.get_by_text("Submissions are final").is_visible()
    assert console_errors == []


def test_each_review_label_says_what_it_means_with_an_example(live_server, page, reply_to_review, console_errors):
    log_in(page, live_server)
    open_task(page, live_server, "label_assistant_reply")
    spam = page.locator("fieldset.label-field").filter(has=radio(page, "spam", "0"))
    assert spam.locator(".label-guide").is_visible()
    assert "Example:" in spam.locator(".label-guide").inner_text()
    assert page.locator("fieldset.label-field .label-guide").count() == page.locator("fieldset.label-field").count()
    assert console_errors == []


def test_keys_answer_the_review_questions(live_server, page, reply_to_review, console_errors):
    user = log_in(page, live_server)
    open_task(page, live_server, "label_assistant_reply")
    spam = page.locator("fieldset.label-field").filter(has=radio(page, "spam", "0"))
    assert spam.locator("kbd").all_inner_texts() == ["n", "y"]
    page.keyboard.press("n")
    assert radio(page, "spam", "0").is_checked()
    page.keyboard.press("y")  # an answer moves on to the next question
    assert radio(page, "fails_task", "1").is_checked()
    page.locator("fieldset.label-field").filter(has=radio(page, "quality", "0")).locator("legend").click()
    page.keyboard.press("4")
    assert radio(page, "quality", "0.75").is_checked()
    page.keyboard.press("y")  # the next question is a scale: y is no answer there
    assert page.locator('input[name="label-toxicity"]:checked').count() == 0
    page.keyboard.press("1")
    assert radio(page, "toxicity", "0").is_checked()

    shortcuts = page.locator("details.shortcuts")
    assert shortcuts.get_attribute("open") is None
    page.keyboard.press("?")
    assert shortcuts.get_attribute("open") is not None
    assert shortcuts.get_by_text("answer yes or no").is_visible()
    page.keyboard.press("?")
    assert shortcuts.get_attribute("open") is None
    shortcuts.locator("summary").click()
    assert shortcuts.get_by_text("answer yes or no").is_visible()

    page.get_by_role("button", name="Submit review").click()
    page.get_by_text("Thank you!").wait_for()
    labels = Review.objects.get(user=user).labels
    assert labels["spam"] == 0 and labels["fails_task"] == 1 and labels["quality"] == 0.75
    assert labels["toxicity"] == 0
    assert console_errors == []


def test_keys_do_nothing_while_typing(live_server, page, reply_to_review, console_errors):
    log_in(page, live_server)
    open_task(page, live_server, "label_assistant_reply")
    comment = page.get_by_label("Comment (optional)")
    comment.click()
    page.keyboard.type("ny4?")
    assert comment.input_value() == "ny4?"
    assert page.locator("fieldset.label-field input:checked").count() == 0
    assert page.locator("details.shortcuts").get_attribute("open") is None
    assert console_errors == []


def test_the_progress_strip_counts_this_sessions_work(live_server, page, reply_to_review, console_errors):
    user = log_in(page, live_server)
    ContributionEvent.objects.create(user=user, kind="assistant_reply", created_at=timezone.now() - timedelta(days=1))
    open_task(page, live_server, "assistant_reply")
    strip = page.locator("#session-progress")
    assert re.search(r"0 tasks done.*0 points", strip.inner_text(), re.S)  # yesterday's work is not this session's
    page.get_by_label("Your text").fill("Stroll through Trastevere, then see the Pantheon at night.")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Thank you!").wait_for()
    open_task(page, live_server, "label_assistant_reply")
    assert re.search(r"1 task done.*4 points", page.locator("#session-progress").inner_text(), re.S)
    assert console_errors == []


def test_review_choices_are_big_enough_to_tap_on_a_phone(live_server, page, reply_to_review, console_errors):
    page.set_viewport_size({"width": 375, "height": 740})
    log_in(page, live_server)
    open_task(page, live_server, "label_assistant_reply")
    choices = page.locator("fieldset.label-field label").all()
    assert len(choices) == 9 * 2 + 6 * 5
    for choice in choices:
        box = choice.bounding_box()
        assert box["height"] >= 44 and box["width"] >= 44, (choice.inner_text(), box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    choices[1].click()  # a tap on the label, not only on the small circle, answers
    assert radio(page, "spam", "1").is_checked()
    assert console_errors == []
