"""A contributor searches the messages, reads a conversation tree, reacts and collapses a branch in
Chromium; user text with script in it stays text."""

import re

import pytest
from playwright.sync_api import expect

from tests.factories import PASSWORD, UserFactory
from tests.tasks.builders import reply, review, write_prompt

EVIL = "The moon pulls the sea. <script>alert(1)</script> <img src=x onerror=alert(1)>"


@pytest.fixture
def conversation(tree_settings):
    """prompt -> an answer with script in it -> a follow-up; one candidate per step, so the shape is fixed."""
    tree_settings(goal_tree_size=3, max_tree_depth=2, num_reviews_reply=1, num_reviews_initial_prompt=1)
    author, reviewer, answerer, asker = (UserFactory() for _ in range(4))
    prompt = write_prompt(author, text="How do **tides** work?")
    review(reviewer, "label_initial_prompt")
    answer = reply(answerer, EVIL)
    review(reviewer, "label_assistant_reply")
    follow_up = reply(asker, "Why are there two tides a day?", task_type="prompter_reply")
    return {"prompt": prompt, "answer": answer, "follow_up": follow_up}


def log_in(page, live_server, user):
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Username or email").fill(user.email)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + "/dashboard/")


@pytest.mark.django_db(transaction=True)
def test_search_read_react_and_collapse_in_the_browser(live_server, page, screenshot, console_errors, conversation):
    dialogs: list[str] = []

    def on_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    reader = UserFactory(username="reader", display_name="Reader")
    log_in(page, live_server, reader)

    page.get_by_role("link", name="Messages").click()
    page.wait_for_url(live_server.url + "/messages/")
    results = page.locator("#results .message-row")
    expect(results).to_have_count(3)
    expect(page.locator("#results")).to_contain_text("<script>alert(1)</script>")
    screenshot("messages-list")

    page.get_by_role("searchbox", name="Search").fill("tides")
    page.get_by_role("searchbox", name="Search").press("Enter")
    expect(results).to_have_count(2)  # the prompt and the follow-up; htmx swapped the results in place
    expect(page).to_have_url(re.compile(r"/messages/\?q=tides"))
    page.get_by_label("Role").select_option("assistant")
    expect(results).to_have_count(0)
    page.get_by_label("Role").select_option("")
    expect(results).to_have_count(2)
    screenshot("messages-search")

    page.locator("#results a", has_text="two tides a day").click()
    page.wait_for_url(re.compile(r"/messages/[0-9a-f-]+/"))
    selected = page.locator(".msg.selected")
    expect(selected).to_contain_text("Why are there two tides a day?")
    expect(selected).to_be_in_viewport()
    answer = page.locator(f"#m-{conversation['answer'].pk}")
    expect(answer.locator(".md")).to_have_text(EVIL)  # shown as text, never run
    expect(page.locator(f"#m-{conversation['prompt'].pk} .md strong")).to_have_text("tides")
    expect(page.locator(".msg-tree img")).to_have_count(0)

    plus, minus = answer.locator('[data-emoji="+1"]'), answer.locator('[data-emoji="-1"]')
    plus.click()
    expect(plus).to_have_attribute("aria-pressed", "true")
    expect(plus.locator(".count")).to_have_text("1")
    minus.click()
    expect(minus).to_have_attribute("aria-pressed", "true")
    expect(minus.locator(".count")).to_have_text("1")
    expect(plus).to_have_attribute("aria-pressed", "false")
    expect(plus.locator(".count")).to_have_count(0)
    answer.get_by_title("More reactions").click()
    answer.locator('[data-emoji="heart_eyes"]').click()
    expect(answer.locator('.reactions > [data-emoji="heart_eyes"] .count')).to_have_text("1")  # now always shown
    screenshot("message-tree")

    answer.get_by_text("Report", exact=True).click()
    answer.get_by_label("Why?").fill("Odd markup in the answer")
    answer.get_by_role("button", name="Send report").click()
    expect(answer.locator(".report-result")).to_contain_text("Reported")

    branch = page.locator(".branch").first
    branch.locator("> summary").click()
    expect(answer).to_be_hidden()
    expect(selected).to_be_hidden()
    screenshot("message-tree-collapsed")
    branch.locator("> summary").click()
    expect(answer).to_be_visible()

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    screenshot("message-tree-phone")
    assert dialogs == []
    assert console_errors == []
