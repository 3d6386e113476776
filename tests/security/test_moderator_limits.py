"""Moderators moderate contributors only: banning, unbanning, purging, anonymising or editing a
moderator, a researcher, a staff account or a superuser needs a superuser, by every route (the user
admin's actions and change form, the flagged queue's "ban", the moderation API), and the refusal
says why. Issue 21, finding 5."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission

from oasst.models import ModerationEvent, User
from tasks import services as task_services
from tasks.models import FlaggedMessage, Message
from tests.conftest import token_client
from tests.factories import UserFactory
from tests.tasks.builders import write_prompt

pytestmark = pytest.mark.django_db

PROTECTED = {
    "moderator": "Only a superuser can {verb} a moderator.",
    "researcher": "Only a superuser can {verb} a researcher.",
    "staff": "Only a superuser can {verb} a staff account.",
    "superuser": None,  # ban and anonymise have their own refusal for administrators, checked below
}
ACTIONS = {  # admin action -> the verb of its refusal
    "ban": "ban",
    "unban": "unban",
    "purge_messages": "purge the messages of",
    "anonymise": "anonymise",
}
SUPERUSER_REFUSALS = {
    "ban": "Administrators and you yourself cannot be banned here.",
    "anonymise": "An administrator's account cannot be anonymised",
}


@pytest.fixture
def researchers_group(db):
    group, _ = Group.objects.get_or_create(name="researchers")
    group.permissions.add(Permission.objects.get(codename="export_trees"))
    return group


@pytest.fixture
def people(moderators_group, researchers_group, small_trees):
    def staff(group=None, **flags):
        user = UserFactory(is_staff=True, **flags)
        if group is not None:
            user.groups.add(group)
        return user

    found = {"actor": staff(moderators_group), "moderator": staff(moderators_group),
             "researcher": staff(researchers_group), "staff": staff(),
             "superuser": staff(is_superuser=True), "contributor": UserFactory()}
    for role in ("moderator", "researcher", "staff", "superuser", "contributor"):
        write_prompt(found[role], text=f"A prompt by the {role}.")  # something to purge
    return found


def snapshot(user: User) -> tuple:
    user = User.objects.get(pk=user.pk)
    return (user.username, user.display_name, user.is_active, user.is_banned, user.ban_reason,
            user.moderator_notes, Message.objects.filter(author=user, deleted=True).count())


def refusal(action: str, role: str) -> str:
    if role == "superuser" and action in SUPERUSER_REFUSALS:
        return SUPERUSER_REFUSALS[action]
    return (PROTECTED[role] or "Only a superuser can {verb} a superuser.").format(verb=ACTIONS[action])


def run_action(client, action: str, target: User):
    return client.post("/admin/oasst/user/", {"action": action, "_selected_action": [target.pk],
                                              "reason": "probe", "apply": "1"}, follow=True)


def flashed(response) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def rename_data(target: User) -> dict:
    """The change form as a moderator's browser would post it, with a new name."""
    return {"username": f"{target.username}-renamed", "display_name": "Renamed", "preferred_language": "en",
            "show_on_leaderboard": "on", "moderator_notes": "renamed", "_save": "Save"}


@pytest.mark.parametrize("role", sorted(PROTECTED))
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_moderator_cannot_run_a_user_action_on_a_protected_account(client, people, role, action):
    target = people[role]
    before = snapshot(target)
    client.force_login(people["actor"])
    response = run_action(client, action, target)
    assert response.status_code == 200
    assert refusal(action, role) in flashed(response)
    assert "done" not in flashed(response)
    assert snapshot(target) == before
    assert not ModerationEvent.objects.exists()


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_moderator_still_moderates_contributors(client, people, action):
    target = people["contributor"]
    client.force_login(people["actor"])
    if action == "unban":
        run_action(client, "ban", target)
    response = run_action(client, action, target)
    assert "done" in flashed(response) and "Only a superuser" not in flashed(response)
    assert ModerationEvent.objects.filter(target_id=str(target.pk)).exists()


@pytest.mark.parametrize("role", ["moderator", "researcher", "staff"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_superuser_moderates_protected_accounts(client, people, role, action):
    target = people[role]
    client.force_login(people["superuser"])
    if action == "unban":
        run_action(client, "ban", target)
    response = run_action(client, action, target)
    assert "done" in flashed(response), flashed(response)
    assert ModerationEvent.objects.filter(target_id=str(target.pk)).exists()


@pytest.mark.parametrize("role", sorted(PROTECTED))
def test_the_change_form_of_a_protected_account_is_read_only_to_moderators_and_a_forged_rename_is_refused(
        client, people, role):
    target = people[role]
    before = snapshot(target)
    client.force_login(people["actor"])
    page = client.get(f"/admin/oasst/user/{target.pk}/change/")
    assert page.status_code == 200 and 'name="username"' not in page.content.decode()
    forged = client.post(f"/admin/oasst/user/{target.pk}/change/", rename_data(target))
    assert forged.status_code == 403
    assert f"Only a superuser can edit a {role if role != 'staff' else 'staff account'}." in forged.content.decode()
    assert snapshot(target) == before
    assert not LogEntry.objects.exists()


def test_a_moderator_renames_a_contributor_and_a_superuser_renames_a_moderator(client, people):
    client.force_login(people["actor"])
    contributor = people["contributor"]
    page = client.get(f"/admin/oasst/user/{contributor.pk}/change/")
    assert 'name="username"' in page.content.decode()
    response = client.post(f"/admin/oasst/user/{contributor.pk}/change/", rename_data(contributor))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(pk=contributor.pk).display_name == "Renamed"
    client.force_login(people["superuser"])
    moderator = people["moderator"]
    data = {**rename_data(moderator), "email": moderator.email, "is_active": "on", "is_staff": "on",
            "groups": [g.pk for g in moderator.groups.all()]}
    response = client.post(f"/admin/oasst/user/{moderator.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(pk=moderator.pk).display_name == "Renamed"


def _flag_on_a_message_by(user: User) -> FlaggedMessage:
    message = Message.objects.filter(author=user).first()
    return task_services.message_report(user=UserFactory(), message_id=message.pk, reason="rude")


@pytest.mark.parametrize("role", ["moderator", "researcher", "staff"])
def test_the_flagged_queue_cannot_ban_a_protected_author(client, people, role):
    """The queue's "ban" decision bans the author: refused whole (the message stays) for a
    protected author, in the admin's resolve button, its bulk action and the moderation API."""
    target = people[role]
    flag = _flag_on_a_message_by(target)
    before = snapshot(target)
    reason = PROTECTED[role].format(verb="ban")
    client.force_login(people["actor"])
    response = client.post(f"/admin/tasks/flaggedmessage/{flag.pk}/resolve/ban/", {"reason": "probe"}, follow=True)
    assert reason in flashed(response)
    response = client.post("/admin/tasks/flaggedmessage/", {"action": "delete_and_ban", "_selected_action": [flag.pk],
                                                            "apply": "1", "reason": "probe"}, follow=True)
    assert reason in flashed(response)
    api = token_client(people["actor"]).post(f"/api/v1/moderation/flags/{flag.pk}/resolve/",
                                             {"decision": "ban", "reason": "probe"}, format="json")
    assert api.status_code == 403 and api.json() == {"detail": reason, "code": "protected_account"}
    assert snapshot(target) == before
    assert not FlaggedMessage.objects.get(pk=flag.pk).processed
    assert not ModerationEvent.objects.exists()


def test_the_services_refuse_a_moderator_on_a_protected_account(people):
    """The check lives in the services: any future route inherits it."""
    from oasst import moderation
    from oasst.errors import Forbidden
    from tasks.services import user_purge_messages

    target = people["researcher"]
    for call in (lambda: moderation.user_ban(actor=people["actor"], user_id=target.pk, reason="x"),
                 lambda: moderation.user_unban(actor=people["actor"], user_id=target.pk),
                 lambda: user_purge_messages(actor=people["actor"], user_id=target.pk),
                 lambda: moderation.user_anonymise(actor=people["actor"], user_id=target.pk)):
        with pytest.raises(Forbidden) as refused:
            call()
        assert refused.value.code == "protected_account"
    assert snapshot(target)[2:] == (True, False, "", "", 0) and not ModerationEvent.objects.exists()
