"""Every task type in the browser, and every main page free of console errors, at desktop and
phone width."""

import re

import pytest

from tasks.models import Message
from tests.e2e.test_contributor_flow import _session_cookie
from tests.factories import UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conversation(tree_settings):
    tree_settings(goal_tree_size=6, num_reviews_reply=1, num_reviews_initial_prompt=1, num_required_rankings=1,
                  p_full_labeling_review_reply_prompter=1.0)
    prompt = write_prompt(UserFactory(), text="Plan a weekend in Rome.")
    review_of(UserFactory(), prompt)
    answer = reply_to(UserFactory(), prompt, "Day one: the Colosseum. Day two: the Vatican.")
    review_of(UserFactory(), answer)
    follow_up = reply_to(UserFactory(), answer, "What about food?")
    second = reply_to(UserFactory(), prompt, "Day one: the Colosseum and Trastevere in the evening.")
    review_of(UserFactory(), second)
    write_prompt(UserFactory(), text="Explain photosynthesis simply.")
    return prompt, answer, follow_up


def open_task(page, live_server, task_type):
    page.goto(live_server.url + "/dashboard/")
    page.locator(f'button[data-task-type="{task_type}"]').click()
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]+/$"))


def test_the_remaining_task_types_in_the_browser(live_server, page, conversation, screenshot, console_errors):
    user = UserFactory()
    page.context.add_cookies([_session_cookie(live_server, user)])

    open_task(page, live_server, "label_initial_prompt")
    page.locator('input[name="label-spam"][value="0"]').check()
    page.get_by_role("button", name="Submit review").click()
    page.get_by_text("Thank you!").wait_for()

    open_task(page, live_server, "label_prompter_reply")
    screenshot("label-full")
    assert page.locator('input[name="label-humor"]').count() == 5  # a full review: Likert labels too
    page.locator('input[name="label-spam"][value="0"]').check()
    page.locator('input[name="label-humor"][value="0.25"]').check()
    page.get_by_role("button", name="Submit review").click()
    page.get_by_text("Thank you!").wait_for()

    open_task(page, live_server, "prompter_reply")
    assert page.get_by_text("Day one: the Colosseum and Trastevere in the evening.").is_visible()
    page.get_by_label("Your text").fill("And where should we stay?")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Thank you!").wait_for()
    assert Message.objects.filter(author=user).count() == 1
    assert console_errors == []


@pytest.mark.parametrize("width", [1280, 390])
def test_main_pages_have_no_console_errors(live_server, page, conversation, screenshot, console_errors, width):
    page.set_viewport_size({"width": width, "height": 900})
    prompt = conversation[0]
    page.goto(live_server.url + "/")
    screenshot(f"page-landing-{width}")
    for path in ("/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/terms/",
                 "/leaderboard/"):
        page.goto(live_server.url + path)
    user = UserFactory()
    page.context.add_cookies([_session_cookie(live_server, user)])
    for name, path in (("dashboard", "/dashboard/"), ("leaderboard", "/leaderboard/total/"),
                       ("messages", "/messages/"), ("tree", f"/messages/{prompt.pk}/"), ("profile", "/profile/"),
                       ("terms", "/terms/")):
        page.goto(live_server.url + path)
        screenshot(f"page-{name}-{width}")
        assert page.locator("main").is_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{path} scrolls sideways at {width}px"
    open_task(page, live_server, "assistant_reply")
    screenshot(f"page-task-{width}")
    assert console_errors == []
