"""The task pages' defects of issue 16, each as a person meets it in Chromium: "all replies are bad",
a report inside a ranking, Markdown laid out as text inside forms, drafts kept until the server
accepts them, a thank-you page that survives a reload, and the smaller wording and feedback fixes."""

import re

import pytest
from playwright.sync_api import expect

from ranking.models import Ranking
from tasks.models import FlaggedMessage, Message, Task
from tests.e2e.test_contributor_flow import _session_cookie, take
from tests.factories import UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

pytestmark = pytest.mark.django_db(transaction=True)

LONG_SENTENCE = (
    "A reply with a **bold** word and an *italic* one in the middle of a long sentence that goes on "
    "and on, well past the width of any narrow column, so that it has to wrap over several lines."
)


@pytest.fixture
def small(tree_settings):
    return tree_settings(
        goal_tree_size=3,
        num_reviews_reply=1,
        num_reviews_initial_prompt=1,
        num_required_rankings=1,
        p_full_labeling_review_reply_assistant=0.0,
    )


@pytest.fixture
def ranker(live_server, page, small):
    """A signed-in contributor in front of a ranking task of two reviewed replies."""
    prompt = write_prompt(UserFactory(), text="Name a colour.")
    review_of(UserFactory(), prompt)
    for text in ("Red.", LONG_SENTENCE):
        review_of(UserFactory(), reply_to(UserFactory(), prompt, text))
    user = UserFactory()
    page.context.add_cookies([_session_cookie(live_server, user)])
    take(page, live_server, "rank_assistant_replies")
    return user


@pytest.fixture
def writer(live_server, page, small):
    user = UserFactory()
    page.context.add_cookies([_session_cookie(live_server, user)])
    return user


def test_all_replies_are_bad_can_be_submitted(page, ranker, screenshot, console_errors):
    box = page.get_by_label("All replies are bad: they cannot be ranked")
    ranking_inputs = page.locator('ol.ranking input[name="ranking"]')
    box.check()
    expect(page.locator("ol.ranking")).to_have_attribute("aria-disabled", "true")
    for index in range(ranking_inputs.count()):
        expect(ranking_inputs.nth(index)).to_be_disabled()
    expect(page.get_by_role("button", name="Move up").first).to_be_disabled()
    box.uncheck()  # unticking gives the ranking back
    expect(page.locator("ol.ranking")).not_to_have_attribute("aria-disabled", "true")
    expect(ranking_inputs.first).to_be_enabled()
    box.check()
    screenshot("rank-all-bad")
    page.get_by_role("button", name="Submit ranking").click()
    page.get_by_text("Thank you!").wait_for()
    ranking = Ranking.objects.get(user=ranker)
    assert ranking.not_rankable and ranking.ranking == []
    assert console_errors == []


def test_a_report_inside_a_ranking_sends_that_replys_reason_and_says_so(page, ranker, screenshot, console_errors):
    first = page.locator("ol.ranking > li").first
    first_id = first.get_attribute("data-id")
    first.get_by_text("Report", exact=True).click()
    first.get_by_role("button", name="Send report").click()  # no reason yet: the refusal is shown
    expect(first.locator(".report-result")).to_contain_text("Say why you report this message.")
    assert not FlaggedMessage.objects.exists()
    first.get_by_label("Why?").fill("It names no colour at all")
    first.get_by_role("button", name="Send report").click()
    expect(first.locator(".report-result")).to_contain_text("Reported")
    screenshot("rank-report-sent")
    flag = FlaggedMessage.objects.get()
    assert str(flag.message_id) == first_id and flag.reasons == ["It names no colour at all"]
    second = page.locator("ol.ranking > li").nth(1)
    second.get_by_text("Report", exact=True).click()
    second.get_by_label("Why?").fill("Too long")
    second.get_by_label("Why?").press("Enter")  # Enter sends this report, not the ranking
    expect(second.locator(".report-result")).to_contain_text("Reported")
    assert FlaggedMessage.objects.count() == 2 and not Ranking.objects.exists()
    page.route("**/report/", lambda route: route.abort())  # the network fails: said, not swallowed
    second.get_by_role("button", name="Send report").click()
    expect(second.locator(".report-result")).to_contain_text("The report could not be sent")
    page.unroute("**/report/")
    # The ranking is still submitted as a ranking, without the report's fields.
    page.get_by_role("button", name="Submit ranking").click()
    page.get_by_text("Thank you!").wait_for()
    assert not Ranking.objects.get(user=ranker).not_rankable
    assert [error for error in console_errors if not re.search(r"400|htmx:|ERR_FAILED", error)] == []


def _layout(page, selector: str) -> dict:
    return page.locator(selector).first.evaluate("""(p) => {
        const strong = p.querySelector('strong').getBoundingClientRect();
        const em = p.querySelector('em').getBoundingClientRect();
        const range = document.createRange();
        range.setStart(p.firstChild, 0);
        range.setEnd(p.firstChild, 1);
        return {first: range.getBoundingClientRect().top, strong: strong.top, em: em.top,
                width: p.getBoundingClientRect().width};
    }""")


def test_markdown_in_a_ranking_and_in_the_preview_lays_out_as_text(live_server, page, ranker):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.reload()
    layout = _layout(page, "ol.ranking .md p:has(strong)")
    assert abs(layout["strong"] - layout["first"]) < 2 and abs(layout["em"] - layout["first"]) < 2, layout
    assert layout["width"] > 480, layout

    take(page, live_server, "initial_prompt")
    page.get_by_label("Your text").fill(LONG_SENTENCE.replace("A reply", "A prompt"))
    page.get_by_role("button", name="Preview").click()
    page.locator("#preview strong").wait_for()
    layout = _layout(page, "#preview p")
    assert abs(layout["strong"] - layout["first"]) < 2 and abs(layout["em"] - layout["first"]) < 2, layout
    assert layout["width"] > 480, layout


def test_a_draft_is_kept_until_the_server_accepts_it(live_server, page, writer, console_errors):
    write_prompt(writer, text="Why is the sky blue?")
    take(page, live_server, "initial_prompt")
    task_url = page.url
    page.on("dialog", lambda dialog: dialog.accept())

    page.get_by_label("Your text").fill("Why is the sky blue?")  # the same text again: refused
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#form-error")).to_contain_text("You sent the same text recently.")
    page.goto(task_url)
    expect(page.get_by_label("Your text")).to_have_value("Why is the sky blue?")

    page.get_by_label("Your text").fill("Why do leaves turn red in autumn?")
    page.route("**/submit/", lambda route: route.abort())  # the network fails
    page.get_by_role("button", name="Submit").click()
    page.wait_for_timeout(300)
    page.unroute("**/submit/")
    page.goto(task_url)
    expect(page.get_by_label("Your text")).to_have_value("Why do leaves turn red in autumn?")

    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Thank you!").wait_for()
    task_id = task_url.rstrip("/").split("/")[-1]
    assert page.evaluate(f"window.localStorage.getItem('draft-{task_id}')") is None
    assert Message.objects.filter(author=writer).count() == 2
    assert [error for error in console_errors if not re.search(r"409|ERR_FAILED", error)] == []


def test_the_thank_you_page_survives_a_reload_and_the_submit_address_opens(live_server, page, writer, console_errors):
    take(page, live_server, "initial_prompt")
    task_id = page.url.rstrip("/").split("/")[-1]
    page.get_by_label("Your text").fill("How do bees make honey?")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Thank you!").wait_for()
    assert page.url == f"{live_server.url}/tasks/{task_id}/done/"
    thanks = page.locator(".done").inner_text()
    assert "points now" in thanks and "Next task" in thanks
    page.reload()
    expect(page.locator(".done")).to_have_text(thanks)
    response = page.goto(f"{live_server.url}/tasks/{task_id}/submit/")
    assert response.status == 200 and page.url == f"{live_server.url}/tasks/{task_id}/done/"
    expect(page.locator(".done")).to_have_text(thanks)
    assert Message.objects.filter(author=writer).count() == 1
    assert console_errors == []


def test_one_point_is_said_in_the_singular(page, ranker, tree_settings, console_errors):
    tree_settings(num_required_rankings=2)  # no consensus yet, so no point for agreeing with it
    page.get_by_role("button", name="Submit ranking").click()  # a ranking alone earns one point
    done = page.locator(".done")
    expect(done).to_contain_text("+1 point now; 1 in total")
    expect(done).not_to_contain_text("points")
    assert console_errors == []


def test_a_reported_review_is_acknowledged(live_server, page, writer, console_errors):
    write_prompt(UserFactory(), text="What is a prime number?")
    take(page, live_server, "label_initial_prompt")
    page.locator('input[name="label-spam"][value="0"]').check()
    page.get_by_label("Report this message to the moderators").check()
    page.get_by_role("button", name="Submit review").click()
    expect(page.locator(".done")).to_contain_text("Your report was sent to the moderators.")
    assert FlaggedMessage.objects.get().reports == 1
    assert console_errors == []


def test_a_skip_is_confirmed_on_the_next_page(live_server, page, writer, console_errors):
    take(page, live_server, "initial_prompt")
    page.get_by_text("Skip this task").click()
    page.get_by_label("Why? (optional)").select_option("unclear")
    page.get_by_role("button", name="Skip", exact=True).click()
    page.wait_for_url(f"{live_server.url}/dashboard/")
    expect(page.locator(".messages")).to_contain_text("Task skipped.")
    assert Task.objects.get(user=writer).skipped
    assert console_errors == []


def test_a_paste_beyond_the_limit_is_not_cut_silently(live_server, page, writer, console_errors):
    take(page, live_server, "initial_prompt")
    area = page.get_by_label("Your text")
    area.click()
    page.keyboard.insert_text("Why? " + "x" * 2100)  # what a paste does
    expect(area).to_have_value("Why? " + "x" * 2100)  # nothing cut behind the user's back
    counter = page.locator("#counter")
    expect(counter).to_contain_text("2105 / 2000")
    expect(counter).to_contain_text("too long by 105")
    page.get_by_role("button", name="Submit").click()
    assert page.url.endswith(f"/tasks/{page.url.rstrip('/').split('/')[-1]}/")  # not sent
    assert area.evaluate("(area) => area.validationMessage").startswith("The text is longer than 2000 characters")
    assert not Message.objects.exists()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("Why is the sea salty?")
    expect(counter).not_to_contain_text("too long")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Thank you!").wait_for()
    assert console_errors == []
