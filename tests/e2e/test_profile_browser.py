"""A contributor manages their profile in Chromium: display name, API token, their data."""

import json

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from ranking.models import ContributionEvent
from tests.factories import PASSWORD, UserFactory
from tests.oasst.builders import contributions


@pytest.mark.django_db(transaction=True)
def test_profile_settings_token_and_data_download_in_the_browser(live_server, page, screenshot, console_errors):
    user = UserFactory(username="grace", display_name="Grace H.")
    contributions(user, 4)
    ContributionEvent.objects.bulk_create([ContributionEvent(user=user, kind=kind, created_at=timezone.now())
                                           for kind in ("prompt", "assistant_reply", "full_label", "ranked_1st")])
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Username or email").fill(user.username)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + "/dashboard/")

    page.get_by_role("link", name="Grace H.").click()
    page.wait_for_url(live_server.url + "/profile/")
    page.get_by_role("heading", name="Where your points come from").wait_for()
    screenshot("profile")

    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Display name").fill("  Grace Hopper  ")
    page.get_by_label("Show me on the leaderboard").uncheck()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Your settings are saved.").wait_for()
    assert page.get_by_role("link", name="Grace Hopper").is_visible()
    user.refresh_from_db()
    assert (user.display_name, user.show_on_leaderboard) == ("Grace Hopper", False)
    screenshot("profile-settings")

    page.get_by_role("link", name="API token").click()
    assert page.get_by_text("You have no API token.").is_visible()
    page.get_by_role("button", name="Create a token").click()
    key = page.get_by_label("Your new token").input_value()
    assert key == Token.objects.get(user=user).key
    screenshot("profile-token")
    page.reload()
    assert page.get_by_label("Your new token").count() == 0
    assert page.get_by_role("button", name="Revoke the token").is_visible()

    page.get_by_role("link", name="Overview").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download my data").click()
    download = download_info.value
    assert download.suggested_filename.startswith("oasst-data-grace-")
    data = json.loads(open(download.path(), encoding="utf-8").read())
    assert data["account"]["display_name"] == "Grace Hopper"
    assert len(data["messages"]) == 4 and data["account"]["api_token"]["exists"]

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server.url + "/profile/delete/")
    screenshot("profile-delete-phone")
    assert console_errors == []
