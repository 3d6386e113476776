"""Moderation in the admin: permissions per role, each action's effect, the audit log."""

import pytest

from oasst.errors import Forbidden, ServiceError
from oasst.models import ModerationEvent
from tasks import services
from tasks.models import FlaggedMessage, Message, MessageRevision, MessageTree, TreeState
from tests.factories import UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

pytestmark = pytest.mark.django_db


def act(client, model, action, ids, **extra):
    return client.post(f"/admin/tasks/{model}/", {"action": action, "_selected_action": [str(i) for i in ids],
                                                   **extra}, follow=True)


@pytest.mark.parametrize("role, status", [("anonymous", 302), ("contributor", 302), ("staff", 403),
                                          ("moderator", 200), ("superuser", 200)])
def test_who_may_open_the_message_admin(client, role, status, moderator):
    users = {"contributor": UserFactory(), "staff": UserFactory(is_staff=True), "moderator": moderator,
             "superuser": UserFactory(is_staff=True, is_superuser=True)}
    if role != "anonymous":
        client.force_login(users[role])
    assert client.get("/admin/tasks/message/").status_code == status


def test_staff_without_the_group_cannot_run_moderation_services(conversation):
    prompt, answer, _ = conversation
    staff = UserFactory(is_staff=True)
    with pytest.raises(Forbidden):
        services.message_delete(actor=staff, message_id=answer.pk)
    assert not Message.objects.filter(deleted=True).exists() and not ModerationEvent.objects.exists()


def test_delete_with_subtree_then_undelete_with_ancestors(client, moderator, conversation):
    prompt, answer, follow_up = conversation
    client.force_login(moderator)
    act(client, "message", "delete_with_subtree", [answer.pk], apply="1", choice="spam")
    assert set(Message.objects.filter(deleted=True).values_list("pk", flat=True)) == {answer.pk, follow_up.pk}
    tree = MessageTree.objects.get(pk=prompt.tree_id)
    assert tree.message_count == 1
    act(client, "message", "undelete_with_ancestors", [follow_up.pk], apply="1", choice="deleted by mistake")
    assert not Message.objects.filter(deleted=True).exists()
    tree.refresh_from_db()
    assert tree.message_count == 3
    events = list(ModerationEvent.objects.order_by("created_at").values_list("action", "actor__username"))
    assert events == [("message_delete", "mod"), ("message_undelete", "mod")]


def test_mark_spam_rejects_a_reply_and_aborts_a_prompts_tree(client, moderator, conversation):
    prompt, answer, _ = conversation
    client.force_login(moderator)
    act(client, "message", "mark_spam", [answer.pk], apply="1", choice="spam")
    answer.refresh_from_db()
    assert answer.review_result is False
    act(client, "message", "mark_spam", [prompt.pk], apply="1", choice="spam")
    assert MessageTree.objects.get(pk=prompt.tree_id).state == TreeState.ABORTED_LOW_GRADE
    assert ModerationEvent.objects.filter(action="message_mark_spam").count() == 2


def test_editing_the_text_keeps_a_revision(client, moderator, conversation):
    _, answer, _ = conversation
    client.force_login(moderator)
    page = client.get(f"/admin/tasks/message/{answer.pk}/change/")
    assert page.status_code == 200 and "Conversation tree" in page.content.decode()
    client.post(f"/admin/tasks/message/{answer.pk}/change/", {"text": "A story about a watchmaker.",
                                                              "reason": "spam link removed"})
    answer.refresh_from_db()
    assert answer.text == "A story about a watchmaker." and answer.edited
    assert MessageRevision.objects.get(message=answer).text == "Buy cheap watches!"
    event = ModerationEvent.objects.get(action="message_edit")
    assert event.before["text"] == "Buy cheap watches!" and event.reason == "spam link removed"


def test_halt_resume_abort_and_move_trees(client, moderator, conversation):
    prompt, _, _ = conversation
    client.force_login(moderator)
    act(client, "messagetree", "halt", [prompt.tree_id], apply="1", choice="under review")
    tree = MessageTree.objects.get(pk=prompt.tree_id)
    assert tree.state == TreeState.HALTED_BY_MODERATOR
    act(client, "messagetree", "resume", [prompt.tree_id], apply="1", choice="review done")
    tree.refresh_from_db()
    assert tree.state == TreeState.GROWING
    form = act(client, "messagetree", "move_to_state", [prompt.tree_id])
    assert "Move: 1 selected" in form.content.decode()
    act(client, "messagetree", "move_to_state", [prompt.tree_id], state="ready_for_export", reason="test",
        apply="Move")
    tree.refresh_from_db()
    assert tree.state == TreeState.GROWING  # not along an arrow: refused
    act(client, "messagetree", "move_to_state", [prompt.tree_id], state="ranking", reason="enough", apply="Move")
    tree.refresh_from_db()
    assert tree.state in (TreeState.RANKING, TreeState.READY_FOR_EXPORT, TreeState.READY_FOR_SCORING)
    act(client, "messagetree", "abort", [prompt.tree_id], apply="1", reason="test tree")
    tree.refresh_from_db()
    assert tree.state in (TreeState.ABORTED_LOW_GRADE, TreeState.READY_FOR_EXPORT)
    assert ModerationEvent.objects.filter(action="tree_move").count() >= 4


def test_flagged_queue_decisions(client, moderator, conversation):
    prompt, answer, _ = conversation
    services.message_report(user=UserFactory(), message_id=answer.pk, reason="spam link")
    services.message_report(user=UserFactory(), message_id=prompt.pk, reason="boring")
    client.force_login(moderator)
    page = client.get("/admin/tasks/flaggedmessage/", follow=True).content.decode()
    assert "spam link" in page and "boring" in page and 'data-decision="ban"' in page
    flags = {f.message_id: f.pk for f in FlaggedMessage.objects.all()}
    back = client.post(f"/admin/tasks/flaggedmessage/{flags[prompt.pk]}/resolve/dismiss/",
                       {"choice": "no rule broken", "next": "/admin/tasks/flaggedmessage/?processed__exact=0"})
    assert back["Location"] == "/admin/tasks/flaggedmessage/?processed__exact=0"
    off_site = client.post(f"/admin/tasks/flaggedmessage/{flags[answer.pk]}/resolve/delete/",
                           {"choice": "spam", "next": "https://evil.example/phish"})
    assert off_site["Location"] == "/admin/tasks/flaggedmessage/"  # never a redirect off the site
    assert FlaggedMessage.objects.filter(processed=True).count() == 2
    answer.refresh_from_db()
    prompt.refresh_from_db()
    assert answer.deleted and not prompt.deleted
    assert set(ModerationEvent.objects.values_list("action", flat=True)) >= {"flag_dismiss", "flag_delete"}


def test_audit_log_is_read_only_even_for_superusers(client, moderator, conversation):
    _, answer, _ = conversation
    services.message_flag(actor=moderator, message_id=answer.pk, reason="look")
    event = ModerationEvent.objects.get()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert client.get("/admin/oasst/moderationevent/").status_code == 200
    assert client.get("/admin/oasst/moderationevent/add/").status_code == 403
    assert client.post(f"/admin/oasst/moderationevent/{event.pk}/delete/").status_code == 403
    client.post(f"/admin/oasst/moderationevent/{event.pk}/change/", {"reason": "rewritten"})
    event.refresh_from_db()
    assert event.reason == "look"


def test_message_changelist_queries_do_not_grow_with_rows(client, moderator, conversation,
                                                          django_assert_max_num_queries):
    client.force_login(moderator)
    with django_assert_max_num_queries(20) as few:
        client.get("/admin/tasks/message/")
    prompt = conversation[0]
    for i in range(40):
        services.message_flag(actor=moderator, message_id=prompt.pk, reason=str(i))
        write_prompt(UserFactory(), text=f"Prompt {i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/admin/tasks/message/")
    assert page.status_code == 200 and "Prompt 39" in page.content.decode()


def test_moderation_api_for_moderator_tokens(moderator, conversation):
    from tests.conftest import token_client

    prompt, answer, follow_up = conversation
    contributor = token_client(UserFactory())
    response = contributor.post(f"/api/v1/moderation/messages/{answer.pk}/delete/", {"reason": "spam"})
    assert response.status_code == 403 and response.json()["code"] == "not_moderator"
    client = token_client(moderator)
    response = client.post(f"/api/v1/moderation/messages/{answer.pk}/delete/", {"reason": "spam"})
    assert response.status_code == 200 and response.json()["changed"] == 2
    assert client.post(f"/api/v1/moderation/messages/{answer.pk}/nuke/", {}).status_code == 404
    edited = client.post(f"/api/v1/moderation/messages/{prompt.pk}/edit/", {"text": "Tell me a short story."})
    assert edited.json()["text"] == "Tell me a short story."
    moved = client.post(f"/api/v1/moderation/trees/{prompt.tree_id}/move/", {"state": "halted_by_moderator"})
    assert moved.json()["state"] == "halted_by_moderator"
    services.message_report(user=UserFactory(), message_id=prompt.pk, reason="odd")
    flags = client.get("/api/v1/moderation/flags/").json()
    assert [f["message"]["id"] for f in flags] == [str(prompt.pk)]
    resolved = client.post(f"/api/v1/moderation/flags/{flags[0]['id']}/resolve/", {"decision": "dismiss"})
    assert resolved.status_code == 200
    assert contributor.get("/api/v1/moderation/flags/").status_code == 403
    assert ModerationEvent.objects.filter(actor=moderator).count() == 4


def test_ban_takes_effect_at_once_and_unban_restores(client, moderator, conversation):
    from oasst import moderation as user_moderation
    from tests.conftest import token_client

    troll = UserFactory(username="bad")
    task = services.task_request(user=troll, task_type="initial_prompt", lang="en")
    api = token_client(troll)
    user_moderation.user_ban(actor=moderator, user_id=troll.pk, reason="spam")
    assert api.post(f"/api/v1/tasks/{task.pk}/submit/", {"text": "hello"}).json()["code"] == "banned"
    assert api.post("/api/v1/tasks/", {"type": "random", "lang": "en"}).json()["code"] == "banned"
    client.force_login(troll)
    assert client.post("/tasks/new/", {"type": "initial_prompt"}).status_code == 403
    user_moderation.user_unban(actor=moderator, user_id=troll.pk, reason="appeal")
    assert api.post("/api/v1/tasks/", {"type": "initial_prompt", "lang": "en"}).status_code == 201
    with pytest.raises(Forbidden):
        user_moderation.user_ban(actor=UserFactory(is_staff=True), user_id=troll.pk)
    assert list(ModerationEvent.objects.order_by("created_at").values_list("action", flat=True)) == [
        "user_ban", "user_unban"]


def test_purge_a_users_messages_in_a_date_range(moderator, conversation):
    from datetime import timedelta

    from django.utils import timezone


    prompt, answer, follow_up = conversation
    troll = answer.author
    other_prompt = write_prompt(UserFactory(), text="Another question?")
    review_of(UserFactory(), other_prompt)
    services.lottery_activate(lang="en")
    old = reply_to(troll, other_prompt, "An older spam reply")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    deleted = services.user_purge_messages(actor=moderator, user_id=troll.pk,
                                                since=timezone.now() - timedelta(days=1), reason="spammer")
    assert deleted == 2  # the recent reply and its follow-up; the old one is outside the range
    assert set(Message.objects.filter(deleted=True).values_list("pk", flat=True)) == {answer.pk, follow_up.pk}
    with pytest.raises(ServiceError):
        services.user_purge_messages(actor=moderator, user_id=troll.pk, since=timezone.now(),
                                          until=timezone.now() - timedelta(days=1))


def test_moderators_cannot_grant_rights_in_the_user_admin(client, moderator):
    target = UserFactory(username="someone")
    client.force_login(moderator)
    page = client.get(f"/admin/oasst/user/{target.pk}/change/").content.decode()
    assert 'name="is_superuser"' not in page and 'name="groups"' not in page
    client.post(f"/admin/oasst/user/{target.pk}/change/", {
        "username": "someone", "email": target.email, "preferred_language": "en", "is_superuser": "on",
        "is_staff": "on", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    target.refresh_from_db()
    assert not target.is_superuser and not target.is_staff



def test_trollboard_and_statistics_pages(client, moderator, conversation):
    prompt, answer, _ = conversation
    for user in (UserFactory(), UserFactory()):
        services.emoji_set(user=user, message_id=answer.pk, emoji="red_flag", op="add")
    client.force_login(moderator)
    index = client.get("/admin/").content.decode()
    assert "Trollboard" in index and "Statistics" in index
    board = client.get("/admin/tasks/flaggedmessage/trollboard/?frame=total").content.decode()
    assert "troll" in board and "<strong>6</strong>" in board
    stats = client.get("/admin/tasks/flaggedmessage/statistics/").content.decode()
    assert "growing" in stats and "goal_tree_size" in stats and "Active contributors" in stats
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/admin/tasks/flaggedmessage/trollboard/").status_code == 403


def test_a_moderator_anonymises_an_account_and_its_messages_remain(client, moderator, conversation):
    _, answer, _ = conversation
    troll = answer.author
    client.force_login(moderator)
    client.post("/admin/oasst/user/", {"action": "anonymise", "_selected_action": [troll.pk], "reason": "request",
                                       "apply": "Anonymise"})
    troll.refresh_from_db()
    assert troll.username.startswith("deleted-") and not troll.is_active and troll.email == ""
    assert Message.objects.filter(pk=answer.pk, author=troll).exists()
    assert ModerationEvent.objects.get(action="user_anonymise").before == {"username": "troll"}
