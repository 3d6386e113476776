"""The interface language in Chromium: a visitor picks one in the footer, a contributor sets it on the
profile and keeps it across logins, and screenshots of the dashboard and a task page in every interface
language (tests/e2e/screenshots/ui-<lang>-*.png) for people to look at."""

import re

import pytest
from django.conf import settings
from django.utils import translation

from oasst.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def translated(language: str, text: str) -> str:
    with translation.override(language):
        return translation.gettext(text)


def test_a_visitor_picks_german_in_the_footer(live_server, page, console_errors):
    page.goto(live_server.url + "/leaderboard/")
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_label("Interface language").select_option(label="Deutsch")
    page.wait_for_function("document.documentElement.lang === 'de'")
    assert page.url == live_server.url + "/leaderboard/"
    assert page.get_by_role("link", name=translated("de", "Log in"), exact=True).is_visible()
    assert page.locator("#ui-lang").input_value() == "de"
    page.goto(live_server.url + "/")  # the cookie keeps it
    assert page.locator("html").get_attribute("lang") == "de"
    assert console_errors == []


def test_a_contributor_sets_the_interface_language_on_the_profile(live_server, page, log_in, console_errors):
    user = UserFactory(username="ines", preferred_language="en")
    log_in(user)
    page.goto(live_server.url + "/profile/settings/")
    page.locator("form.profile-form").get_by_label("Interface language").select_option(label="Español")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_function("document.documentElement.lang === 'es'")
    assert User.objects.get(pk=user.pk).ui_language == "es"

    page.context.clear_cookies()  # a fresh start: logged out, no language cookie
    page.goto(live_server.url + "/leaderboard/")
    assert page.locator("html").get_attribute("lang") == "en"
    log_in(user)
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.get_by_role("link", name=translated("es", "Leaderboard"), exact=True).first.is_visible()
    assert console_errors == []


@pytest.mark.parametrize("language", [code for code, _ in settings.LANGUAGES])
def test_screenshots_of_the_dashboard_and_a_task_page(live_server, page, log_in, screenshot, console_errors,
                                                       language):
    user = UserFactory(username=f"shot-{language}", preferred_language="en", ui_language=language)
    log_in(user)
    assert page.locator("html").get_attribute("lang") == language
    screenshot(f"ui-{language}-dashboard")
    page.locator('button[data-task-type="initial_prompt"]').click()
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]+/$"))
    assert page.locator("html").get_attribute("lang") == language
    screenshot(f"ui-{language}-task")
    assert console_errors == []
