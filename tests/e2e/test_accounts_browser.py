"""A person logs in and out through the real pages in Chromium."""

import pytest

from tests.factories import PASSWORD, UserFactory


@pytest.mark.django_db(transaction=True)
def test_log_in_and_out_in_the_browser(live_server, page, screenshot, console_errors):
    user = UserFactory(username="ada", display_name="Ada L.")
    page.goto(live_server.url + "/")
    screenshot("home")
    page.get_by_role("link", name="Log in").first.click()
    page.get_by_label("Login").fill(user.email)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    screenshot("login")
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(live_server.url + "/dashboard/")
    assert page.get_by_text("Ada L.").is_visible()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_role("link", name="Log in").first.is_visible()
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
