"""A moderator looks at what the reward model sees, in the admin: the message list filtered by score band and
sorted by score, the lowest-scored recent replies and the replies where the model and the people disagree,
each reached by its link and followed to the message's page."""

import pytest

from tests.factories import PASSWORD, UserFactory
from tests.tasks.test_admin_scores import scored_family

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def scored(tree_settings, moderators_group):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1, goal_tree_size=10, max_active_trees=5)
    moderator = UserFactory(username="mod", is_staff=True)
    moderator.groups.add(moderators_group)
    agree = scored_family("Name a fruit.", [("Apple.", 0, 2.5), ("Banana, I think.", 1, 0.3), ("Rock.", 2, -2.0)])
    reverse = scored_family("Explain rain.", [("Water falls from clouds.", 0, -1.5),
                                              ("Clouds get heavy.", 1, 0.0), ("Dunno lol", 2, 1.2)])
    return agree, reverse


def texts(page) -> list[str]:
    cells = page.locator("#result_list tbody th, #result_list tbody td.field-excerpt")
    return [cell.inner_text().strip() for cell in cells.all()]


def test_moderator_filters_sorts_and_opens_the_score_pages(live_server, page, screenshot, console_errors, scored):
    agree, reverse = scored
    page.goto(live_server.url + "/admin/login/")
    page.get_by_label("Username:").fill("mod")
    page.get_by_label("Password:").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # The message list: the score filter's bands, then the sortable score column.
    page.goto(live_server.url + "/admin/tasks/message/?role__exact=assistant")
    filter_panel = page.locator("#changelist-filter")
    filter_panel.get_by_role("link", name="High (≥ 1)").click()
    page.locator("#result_list").wait_for()
    assert sorted(texts(page)) == ["Apple.", "Dunno lol"]
    filter_panel.get_by_role("link", name="Low (< -1)").click()
    page.locator("#result_list").wait_for()
    assert sorted(texts(page)) == ["Rock.", "Water falls from clouds."]
    filter_panel.get_by_role("link", name="Middle (-1 to 1)").click()
    page.locator("#result_list").wait_for()
    assert sorted(texts(page)) == ["Banana, I think.", "Clouds get heavy."]
    filter_panel.get_by_role("link", name="Unscored").click()
    page.locator("#result_list, .paginator").first.wait_for()
    assert all(text not in page.content() for text in ("Apple.", "Rock."))
    page.goto(live_server.url + "/admin/tasks/message/?role__exact=assistant")
    page.locator("th.column-reward_score a").first.click()  # ascending
    page.locator("#result_list").wait_for()
    scores = [float(cell.inner_text()) for cell in page.locator("#result_list td.field-reward_score").all()]
    assert scores == sorted(scores) and len(scores) == 6
    page.locator("th.column-reward_score a.toggle").first.click()  # descending
    page.locator("#result_list").wait_for()
    scores = [float(cell.inner_text()) for cell in page.locator("#result_list td.field-reward_score").all()]
    assert scores == sorted(scores, reverse=True)
    screenshot("admin-messages-by-score")

    # The lowest-scored replies, from the message list's link; the week, then the month.
    page.get_by_role("link", name="Lowest-scored replies").click()
    rows = page.locator("#lowest-scored tbody tr")
    assert rows.nth(0).inner_text().startswith("-2.000") and "Rock." in rows.nth(0).inner_text()
    assert rows.count() == 6
    page.get_by_role("link", name="30", exact=True).click()
    assert page.locator("#lowest-scored tbody tr").count() == 6
    screenshot("admin-lowest-scored")
    page.get_by_role("link", name="Rock.").click()
    assert "Rock." in page.locator("#content").inner_text()

    # The disagreements, from the admin index: only the reversed set, at every bar.
    page.goto(live_server.url + "/admin/")
    page.get_by_role("link", name="Model and people disagree").click()
    rows = page.locator("#disagreements tbody tr")
    assert rows.count() == 1 and rows.nth(0).inner_text().startswith("-1.00")
    page.get_by_role("link", name="-0.5", exact=True).click()
    assert page.locator("#disagreements tbody tr").count() == 1
    page.get_by_role("link", name="7", exact=True).click()
    assert page.locator("#disagreements tbody tr").count() == 1
    screenshot("admin-score-disagreements")
    page.get_by_role("link", name="Dunno lol").click()
    assert "Dunno lol" in page.locator("#content").inner_text()
    assert not console_errors
