"""Browser tests: Debian's Chromium drives the real pages on pytest-django's live server."""

from pathlib import Path

import pytest

from tests.factories import PASSWORD

SCREENSHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture
def screenshot(page):
    def take(name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def log_in(page, live_server):
    """log_in(user): through the log-in page (in English: it comes before the user is known), ending on
    the dashboard."""
    def go(user) -> None:
        page.goto(live_server.url + "/accounts/login/")
        page.get_by_label("Username or email").fill(user.username)
        page.get_by_label("Password:", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(live_server.url + "/dashboard/")

    return go


@pytest.fixture
def console_errors(page):
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    return errors
