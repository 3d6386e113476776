"""A person logs in and out through the real pages in Chromium."""

import pytest

from tests.factories import PASSWORD, UserFactory


@pytest.mark.django_db(transaction=True)
def test_log_in_and_out_in_the_browser(live_server, page, screenshot, console_errors):
    user = UserFactory(username="ada", display_name="Ada L.")
    page.goto(live_server.url + "/")
    screenshot("home")
    page.get_by_role("link", name="Log in").first.click()
    assert page.get_by_role("heading", name="Log in").is_visible()  # one wording everywhere: "Log in"
    page.get_by_label("Username or email").fill(user.email)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    screenshot("login")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + "/dashboard/")
    assert page.get_by_text("Ada L.").is_visible()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_role("link", name="Log in").first.is_visible()
    assert console_errors == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 375])
def test_the_sign_up_page_does_not_scroll_sideways_and_hides_its_bot_trap(live_server, page, screenshot,
                                                                        console_errors, width):
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(live_server.url + "/accounts/signup/")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("document.body.scrollWidth") <= width
    trap = page.locator("input[name=website]")
    assert trap.count() == 1 and trap.get_attribute("aria-hidden") == "true"  # there for bots, not for people
    box = trap.bounding_box()
    assert box is None or box["width"] <= 1 and box["height"] <= 1
    assert not page.get_by_role("textbox", name="website").count()  # nor for screen readers
    email = page.get_by_label("Email").bounding_box()
    assert email["x"] >= 0 and email["x"] + email["width"] <= width  # the form stays on the screen
    page.locator("main").get_by_role("link", name="log in", exact=True).click()  # "Then please log in."
    page.get_by_role("heading", name="Log in").wait_for()
    screenshot(f"signup-{width}")
    assert console_errors == []


@pytest.mark.django_db(transaction=True)
def test_api_docs_render_offline_from_our_static_files(live_server, page, screenshot, console_errors):
    outside = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(live_server.url) else None)
    page.goto(live_server.url + "/api/v1/docs/")
    page.get_by_text("/api/v1/auth/token/").first.wait_for()
    screenshot("api-docs")
    assert outside == []
    assert console_errors == []
