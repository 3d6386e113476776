"""The user admin: list, search, filter, and ban from the change page; staff only."""

import pytest

from tests.factories import UserFactory


@pytest.mark.django_db
def test_user_changelist_searches_by_name_and_email(client, admin_user):
    UserFactory(username="alice", display_name="Alice A.")
    UserFactory(username="bob", email="bob@elsewhere.net")
    client.force_login(admin_user)
    page = client.get("/admin/oasst/user/", {"q": "elsewhere"}).content.decode()
    assert "bob" in page and "alice" not in page
    page = client.get("/admin/oasst/user/", {"q": "Alice A"}).content.decode()
    assert "alice" in page


@pytest.mark.django_db
def test_user_changelist_filters_banned_users(client, admin_user):
    UserFactory(username="troll", is_banned=True, ban_reason="spam")
    UserFactory(username="friend")
    client.force_login(admin_user)
    page = client.get("/admin/oasst/user/", {"is_banned__exact": "1"}).content.decode()
    assert "troll" in page and "friend" not in page


@pytest.mark.django_db
def test_admin_bans_a_user_with_a_reason_and_the_ban_is_audited(client, admin_user):
    from oasst.models import ModerationEvent

    target = UserFactory(username="troll")
    client.force_login(admin_user)
    form = client.post("/admin/oasst/user/", {"action": "ban", "_selected_action": [target.pk]})
    assert "Ban: 1 selected" in form.content.decode()
    client.post("/admin/oasst/user/", {"action": "ban", "_selected_action": [target.pk], "reason": "spam links",
                                       "apply": "Ban"})
    target.refresh_from_db()
    assert target.is_banned and target.ban_reason == "spam links"
    assert ModerationEvent.objects.get().action == "user_ban"
    page = client.get(f"/admin/oasst/user/{target.pk}/change/").content.decode()
    assert "Troll score" in page and "user_ban" in page


@pytest.mark.django_db
def test_unknown_language_is_refused_in_admin(client, admin_user):
    target = UserFactory(username="someone")
    client.force_login(admin_user)
    response = client.post(f"/admin/oasst/user/{target.pk}/change/", {
        "username": "someone", "email": target.email, "preferred_language": "xx-nope", "is_active": "on",
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
    })
    assert response.status_code == 200
    assert "Unknown language code" in response.content.decode()
    target.refresh_from_db()
    assert target.preferred_language == "en"


@pytest.mark.django_db
def test_non_staff_cannot_open_the_admin(client, user):
    client.force_login(user)
    response = client.get("/admin/oasst/user/")
    assert response.status_code == 302 and "/admin/login/" in response.url


@pytest.mark.django_db
def test_user_changelist_query_count_does_not_grow_with_rows(client, admin_user, django_assert_max_num_queries):
    client.force_login(admin_user)
    UserFactory.create_batch(5)
    with django_assert_max_num_queries(12) as few:
        client.get("/admin/oasst/user/")
    UserFactory.create_batch(40)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/admin/oasst/user/")
