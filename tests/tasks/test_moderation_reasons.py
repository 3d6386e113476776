"""Issue 16: a report counts once per user and message; a banned contributor is told so on the
dashboard; every moderation step in the admin asks for a reason (quick choices or free text),
bulk actions are confirmed on a page that lists what they touch, and the audit log keeps the reason."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from oasst import moderation as user_moderation
from oasst.errors import Conflict
from oasst.models import ModerationEvent, User
from ranking.models import RankingResult
from tasks import services
from tasks.models import FlaggedMessage, Message
from tests.conftest import token_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def flashed(response) -> str:
    return " ".join(str(m) for m in response.context["messages"])


# --- 8. One report per user and message ----------------------------------------------------------


def test_a_second_report_by_the_same_user_is_refused_and_not_counted(conversation):
    _, answer, _ = conversation
    reporter = UserFactory()
    services.message_report(user=reporter, message_id=answer.pk, reason="spam link")
    with pytest.raises(Conflict) as refused:
        services.message_report(user=reporter, message_id=answer.pk, reason="spam link again")
    assert refused.value.code == "already_reported"
    flag = FlaggedMessage.objects.get(message=answer)
    assert (flag.reports, flag.reasons) == (1, ["spam link"])
    services.message_report(user=UserFactory(), message_id=answer.pk, reason="advertising")
    flag.refresh_from_db()
    assert (flag.reports, flag.reasons) == (2, ["spam link", "advertising"])


def test_the_api_and_the_page_refuse_a_second_report_by_the_same_user(client, conversation):
    _, answer, follow_up = conversation
    reporter = UserFactory()
    api = token_client(reporter)
    url = reverse("api:message-report", args=[answer.pk])
    assert api.post(url, {"reason": "rude"}).json()["reports"] == 1
    again = api.post(url, {"reason": "still rude"})
    assert again.status_code == 409 and again.json()["code"] == "already_reported"
    client.force_login(reporter)
    page_url = reverse("message-report", args=[follow_up.pk])
    assert "Reported" in client.post(page_url, {"reason": "odd"}).content.decode()
    again = client.post(page_url, {"reason": "odd"})
    assert again.status_code == 409 and "You have already reported this message." in again.content.decode()
    assert [f.reports for f in FlaggedMessage.objects.order_by("created_at")] == [1, 1]


def test_a_red_flag_toggled_again_counts_once_and_a_report_after_it_adds_the_reason(conversation):
    _, answer, _ = conversation
    user = UserFactory()
    for op in ("add", "remove", "add"):
        services.emoji_set(user=user, message_id=answer.pk, emoji="red_flag", op=op)
    flag = FlaggedMessage.objects.get(message=answer)
    assert flag.reports == 1
    services.message_report(user=user, message_id=answer.pk, reason="advertising")
    flag.refresh_from_db()
    assert flag.reports == 1 and flag.reasons == ["red flag", "advertising"]
    with pytest.raises(Conflict):
        services.message_report(user=user, message_id=answer.pk, reason="more")


def test_the_database_keeps_one_report_per_user_and_message(conversation):
    from tasks.models import MessageReport

    _, answer, _ = conversation
    user = UserFactory()
    MessageReport.objects.create(message=answer, user=user, reason="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        MessageReport.objects.create(message=answer, user=user, reason="b")


def test_the_migration_merges_a_users_red_flag_and_review_report_into_one_report(conversation):
    from importlib import import_module

    from django.apps import apps

    from tasks.models import MessageReport, Review

    prompt, answer, _ = conversation
    flagger, reviewer = UserFactory(), UserFactory()
    services.emoji_set(user=flagger, message_id=answer.pk, emoji="red_flag", op="add")
    services.emoji_set(user=reviewer, message_id=prompt.pk, emoji="red_flag", op="add")
    Review.objects.create(message=prompt, user=reviewer, mode="simple", labels={}, text=" rude ", report=True)
    MessageReport.objects.all().delete()  # as before the migration
    migration = import_module("tasks.migrations.0007_message_report_once_per_user")
    migration.reports_from_red_flags_and_reviews(apps, None)
    assert set(MessageReport.objects.values_list("message_id", "user_id", "reason")) == {
        (answer.pk, flagger.pk, ""),
        (prompt.pk, reviewer.pk, "rude"),
    }


# --- 9. A banned contributor is told so up front -------------------------------------------------


def test_a_banned_contributor_sees_the_ban_on_the_dashboard_and_no_task_buttons(client, moderator):
    troll = UserFactory()
    user_moderation.user_ban(actor=moderator, user_id=troll.pk, reason="spam")
    client.force_login(troll)
    page = client.get("/", follow=True).content.decode()
    assert "Your account is banned from contributing." in page
    assert "Give me a task" not in page and 'action="/tasks/new/"' not in page
    user_moderation.user_unban(actor=moderator, user_id=troll.pk, reason="appeal")
    page = client.get(reverse("dashboard")).content.decode()
    assert "banned" not in page and "Give me a task" in page


# --- 10. Reasons, confirmation pages, the message's own page ---------------------------------------


def action(client, model, name, ids, **extra):
    return client.post(
        f"/admin/tasks/{model}/", {"action": name, "_selected_action": [str(i) for i in ids], **extra}, follow=True
    )


def test_a_bulk_delete_is_confirmed_on_a_page_listing_the_messages_and_needs_a_reason(client, moderator, conversation):
    prompt, answer, follow_up = conversation
    client.force_login(moderator)
    confirm = action(client, "message", "delete_with_subtree", [answer.pk, follow_up.pk])
    page = confirm.content.decode()
    assert page.count("<h1") == 1 and "Buy cheap watches!" in page and "What?" in page
    assert 'value="spam"' in page and 'value="personal information"' in page
    assert not Message.objects.filter(deleted=True).exists()
    refused = action(client, "message", "delete_with_subtree", [answer.pk], apply="1", choice="", reason="  ")
    assert "Give a reason" in refused.content.decode()
    refused = action(client, "message", "delete_with_subtree", [answer.pk], apply="1", choice="other")
    assert "Say what the other reason is." in refused.content.decode()
    assert not Message.objects.filter(deleted=True).exists() and not ModerationEvent.objects.exists()
    done = action(
        client, "message", "delete_with_subtree", [answer.pk], apply="1", choice="spam", reason="watch shop link"
    )
    assert "1 done" in flashed(done)
    assert set(Message.objects.filter(deleted=True).values_list("pk", flat=True)) == {answer.pk, follow_up.pk}
    event = ModerationEvent.objects.get()
    assert (event.action, event.reason) == ("message_delete", "spam: watch shop link")


def test_every_message_and_tree_action_records_the_reason_given(client, moderator, conversation):
    prompt, answer, follow_up = conversation
    client.force_login(moderator)
    steps = [
        ("message", "delete_with_subtree", answer.pk, "abusive"),
        ("message", "undelete_with_ancestors", follow_up.pk, "deleted by mistake"),
        ("message", "mark_spam", follow_up.pk, "spam"),
        ("message", "add_to_flagged_queue", answer.pk, "off-topic"),
        ("message", "halt_tree", prompt.pk, "under review"),
        ("message", "resume_tree", prompt.pk, "review done"),
        ("messagetree", "halt", prompt.tree_id, "under review"),
        ("messagetree", "resume", prompt.tree_id, "review done"),
        ("messagetree", "abort", prompt.tree_id, "spam"),
    ]
    for model, name, pk, choice in steps:
        done = action(client, model, name, [pk], apply="1", choice=choice)
        assert "done" in flashed(done), (name, flashed(done))
    reasons = list(ModerationEvent.objects.order_by("pk").values_list("action", "reason"))
    assert reasons == [
        ("message_delete", "abusive"),
        ("message_undelete", "deleted by mistake"),
        ("message_mark_spam", "spam"),
        ("message_flag", "off-topic"),
        ("tree_move", "under review"),
        ("tree_move", "review done"),
        ("tree_move", "under review"),
        ("tree_move", "review done"),
        ("tree_move", "spam"),
    ]


def test_the_flagged_queue_asks_for_a_reason_before_each_decision(client, moderator, conversation):
    prompt, answer, _ = conversation
    services.message_report(user=UserFactory(), message_id=answer.pk, reason="spam link")
    flag = FlaggedMessage.objects.get()
    client.force_login(moderator)
    queue = client.get("/admin/tasks/flaggedmessage/", follow=True).content.decode()
    url = f"/admin/tasks/flaggedmessage/{flag.pk}/resolve/ban/"
    assert f'href="{url}"' in queue
    page = client.get(url).content.decode()
    assert page.count("<h1") == 1 and "Buy cheap watches!" in page and 'value="abusive"' in page
    refused = client.post(url, {"choice": "", "reason": ""})
    assert refused.status_code == 400 and "Give a reason" in refused.content.decode()
    flag.refresh_from_db()
    assert not flag.processed and not User.objects.get(username="troll").is_banned
    assert not ModerationEvent.objects.exists()
    done = client.post(
        url,
        {
            "choice": "spam",
            "reason": "shop links everywhere",
            "next": "/admin/tasks/flaggedmessage/?processed__exact=0",
        },
    )
    assert done["Location"] == "/admin/tasks/flaggedmessage/?processed__exact=0"
    flag.refresh_from_db()
    assert flag.processed and User.objects.get(username="troll").is_banned
    assert set(ModerationEvent.objects.values_list("action", "reason")) == {
        ("message_delete", "spam: shop links everywhere"),
        ("user_ban", "spam: shop links everywhere"),
        ("flag_ban", "spam: shop links everywhere"),
    }


def test_the_flagged_queue_bulk_actions_are_confirmed_with_a_reason(client, moderator, conversation):
    prompt, answer, _ = conversation
    services.message_report(user=UserFactory(), message_id=answer.pk, reason="spam link")
    services.message_report(user=UserFactory(), message_id=prompt.pk, reason="boring")
    client.force_login(moderator)
    ids = list(FlaggedMessage.objects.values_list("pk", flat=True))
    confirm = action(client, "flaggedmessage", "dismiss", ids).content.decode()
    assert "Buy cheap watches!" in confirm and "Tell me a story." in confirm
    assert not FlaggedMessage.objects.filter(processed=True).exists()
    action(client, "flaggedmessage", "dismiss", ids, apply="1", choice="no rule broken")
    assert FlaggedMessage.objects.filter(processed=True).count() == 2
    assert set(ModerationEvent.objects.values_list("reason", flat=True)) == {"no rule broken"}


def test_a_message_is_deleted_and_undeleted_from_its_own_admin_page(client, moderator, conversation):
    _, answer, follow_up = conversation
    client.force_login(moderator)
    change = client.get(f"/admin/tasks/message/{answer.pk}/change/").content.decode()
    delete_url = f"/admin/tasks/message/{answer.pk}/moderate/delete/"
    assert f'href="{delete_url}"' in change
    assert "Buy cheap watches!" in client.get(delete_url).content.decode()
    assert client.post(delete_url, {"reason": ""}).status_code == 400
    answer.refresh_from_db()
    assert not answer.deleted
    back = client.post(delete_url, {"choice": "personal information", "reason": "a phone number"})
    assert back["Location"] == f"/admin/tasks/message/{answer.pk}/change/"
    answer.refresh_from_db()
    assert answer.deleted
    change = client.get(f"/admin/tasks/message/{answer.pk}/change/").content.decode()
    undelete_url = f"/admin/tasks/message/{answer.pk}/moderate/undelete/"
    assert f'href="{undelete_url}"' in change and f'href="{delete_url}"' not in change
    client.post(undelete_url, {"choice": "other", "reason": "the number was fake"})
    answer.refresh_from_db()
    assert not answer.deleted
    assert list(ModerationEvent.objects.order_by("pk").values_list("action", "reason")) == [
        ("message_delete", "personal information: a phone number"),
        ("message_undelete", "the number was fake"),
    ]


@pytest.mark.parametrize("role", ["contributor", "staff"])
def test_users_without_the_moderation_permission_are_refused(client, moderator, conversation, role):
    _, answer, _ = conversation
    services.message_report(user=UserFactory(), message_id=answer.pk, reason="spam link")
    flag = FlaggedMessage.objects.get()
    client.force_login(UserFactory() if role == "contributor" else UserFactory(is_staff=True))
    expected = 302 if role == "contributor" else 403  # a contributor is sent to the admin's login
    for url in (
        f"/admin/tasks/message/{answer.pk}/moderate/delete/",
        f"/admin/tasks/flaggedmessage/{flag.pk}/resolve/delete/",
    ):
        assert client.get(url).status_code == expected
        response = client.post(url, {"choice": "spam"})
        assert response.status_code == expected
        if role == "contributor":
            assert response["Location"].startswith("/admin/login/")
    client.post(
        "/admin/tasks/message/",
        {"action": "delete_with_subtree", "_selected_action": [str(answer.pk)], "apply": "1", "choice": "spam"},
    )
    answer.refresh_from_db()
    flag.refresh_from_db()
    assert not answer.deleted and not flag.processed and not ModerationEvent.objects.exists()


def test_unknown_moderation_steps_are_not_found(client, moderator, conversation):
    _, answer, _ = conversation
    client.force_login(moderator)
    assert client.get(f"/admin/tasks/message/{answer.pk}/moderate/purge/").status_code == 404
    assert client.get("/admin/tasks/flaggedmessage/999999/resolve/delete/").status_code == 404


def test_a_ban_in_the_user_admin_offers_quick_reasons(client, moderator):
    target = UserFactory(username="someone")
    client.force_login(moderator)
    form = client.post("/admin/oasst/user/", {"action": "ban", "_selected_action": [target.pk]}).content.decode()
    assert 'value="spam"' in form and form.count("<h1") == 1
    refused = client.post(
        "/admin/oasst/user/", {"action": "ban", "_selected_action": [target.pk], "apply": "1", "choice": ""}
    )
    assert "Give a reason" in refused.content.decode()
    client.post(
        "/admin/oasst/user/",
        {"action": "ban", "_selected_action": [target.pk], "apply": "1", "choice": "abusive", "reason": "insults"},
    )
    target.refresh_from_db()
    assert target.is_banned and target.ban_reason == "abusive: insults"
    assert ModerationEvent.objects.get().reason == "abusive: insults"


# --- 12. The admin's numbers, labels and headings ----------------------------------------------------


def test_the_admin_shows_agreement_rounded_and_labels_readably(client, moderator, conversation, admin_user):
    _, answer, _ = conversation
    Message.objects.filter(pk=answer.pk).update(
        labels={"spam": {"value": 0.0, "count": 2}, "quality": {"value": 0.75, "count": 2}}
    )
    RankingResult.objects.create(parent=answer, consensus=[], rankings=3, not_rankable=0, agreement=0.4444444444444444)
    client.force_login(admin_user)
    listing = client.get("/admin/ranking/rankingresult/").content.decode()
    assert "0.44" in listing and "0.4444" not in listing
    page = client.get(f"/admin/tasks/message/{answer.pk}/change/").content.decode()
    assert "spam: 0.0 (2 reviews), quality: 0.75 (2 reviews)" in page and "&quot;quality&quot;" not in page
    page = client.get(f"/admin/ranking/rankingresult/{RankingResult.objects.get().pk}/change/").content.decode()
    assert "0.44" in page and "0.4444" not in page


def test_the_trollboard_and_statistics_have_one_heading(client, moderator, conversation):
    client.force_login(moderator)
    for url in ("/admin/tasks/flaggedmessage/trollboard/", "/admin/tasks/flaggedmessage/statistics/"):
        assert client.get(url).content.decode().count("<h1") == 1, url
