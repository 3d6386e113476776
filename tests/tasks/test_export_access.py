"""Exports for staff and researchers: the API endpoint, the admin action and the nightly job."""

import gzip
import json
from datetime import UTC

import pytest
from django.contrib.auth.models import Group, Permission

from tasks.export import nightly_export
from tasks.models import TreeState
from tests.conftest import token_client
from tests.factories import UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_tree(tree_settings):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1)
    prompt = write_prompt(UserFactory(), text="What is a tide?")
    review_of(UserFactory(), prompt)
    from tasks import services

    services.lottery_activate(lang="en")
    answer = reply_to(UserFactory(), prompt, "The rise and fall of the sea.")
    review_of(UserFactory(), answer)
    prompt.tree.__class__.objects.filter(pk=prompt.tree_id).update(state=TreeState.READY_FOR_EXPORT)
    return prompt, answer


def lines(response) -> list[dict]:
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


def test_researchers_and_superusers_stream_exports_others_are_refused(finished_tree):
    prompt, answer = finished_tree
    researchers, _ = Group.objects.get_or_create(name="researchers")  # made by a data migration
    researchers.permissions.add(Permission.objects.get(codename="export_trees"))
    researcher = UserFactory()
    researcher.groups.add(researchers)
    response = token_client(researcher).get("/api/v1/exports/")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/jsonl")
    trees = lines(response)
    assert [t["message_tree_id"] for t in trees] == [str(prompt.tree_id)]
    assert trees[0]["prompt"]["replies"][0]["text"] == "The rise and fall of the sea."
    messages = lines(token_client(UserFactory(is_staff=True, is_superuser=True)).get(
        "/api/v1/exports/?records=messages&anonymize=s1"))
    assert len(messages) == 2 and str(prompt.pk) not in json.dumps(messages)
    for outsider in (UserFactory(), UserFactory(is_staff=True)):  # staff without the permission: nothing
        refused = token_client(outsider).get("/api/v1/exports/")
        assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert token_client(researcher).get("/api/v1/exports/?state=bogus").status_code == 400


def _staff_member(group=None, **flags):
    user = UserFactory(is_staff=True, **flags)
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def researchers_group(db):
    group, _ = Group.objects.get_or_create(name="researchers")  # made by a data migration
    group.permissions.add(Permission.objects.get(codename="export_trees"))
    return group


def _offered_actions(client) -> set[str]:
    response = client.get("/admin/tasks/messagetree/")
    if response.status_code != 200:
        return set()
    return {name for name, _ in response.context["action_form"].fields["action"].choices if name}


def _admin_export(client, tree_id, action="download_export"):
    return client.post("/admin/tasks/messagetree/", {"action": action, "_selected_action": [str(tree_id)]})


def _ids_in(tree: dict) -> tuple[set, set]:
    """The (message and tree ids, user ids) of an exported tree."""
    ids, users, stack = {tree["message_tree_id"]}, set(), [tree["prompt"]]
    while stack:
        node = stack.pop()
        ids.add(node["message_id"])
        users.add(node.get("user_id"))
        stack.extend(node.get("replies", ()))
    return ids, users - {None}


def _real_ids(prompt) -> tuple[set, set]:
    from tasks.models import Message

    messages = Message.objects.filter(tree_id=prompt.tree_id)
    return ({str(prompt.tree_id), *(str(pk) for pk in messages.values_list("pk", flat=True))},
            {str(pk) for pk in messages.values_list("author_id", flat=True)})


def test_moderators_are_not_offered_the_admin_export_and_a_forged_post_streams_nothing(
        client, finished_tree, moderators_group):
    prompt, _ = finished_tree
    client.force_login(_staff_member(moderators_group))
    assert _offered_actions(client) & {"download_export", "download_export_real_ids", "download_export_hf"} == set()
    assert {"halt", "resume"} <= _offered_actions(client)  # the moderation actions stay
    for action in ("download_export", "download_export_real_ids", "download_export_hf"):
        response = _admin_export(client, prompt.tree_id, action)
        assert not response.streaming and response.status_code == 302
        assert b"prompt" not in response.content


def test_researchers_download_anonymised_trees_from_the_admin(client, finished_tree, researchers_group):
    prompt, _ = finished_tree
    client.force_login(_staff_member(researchers_group))
    assert _offered_actions(client) == {"download_export", "download_export_hf"}
    response = _admin_export(client, prompt.tree_id)
    assert response.status_code == 200 and response.streaming
    (tree,) = lines(response)
    ids, users = _ids_in(tree)
    real_ids, real_users = _real_ids(prompt)
    assert len(users) == len(real_users) and ids.isdisjoint(real_ids) and users.isdisjoint(real_users)
    assert tree["prompt"]["text"] == "What is a tide?"
    forged = _admin_export(client, prompt.tree_id, "download_export_real_ids")
    assert not forged.streaming and forged.status_code == 302


def test_superusers_get_real_ids_from_the_admin_only_when_they_ask(client, finished_tree):
    prompt, _ = finished_tree
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert {"download_export", "download_export_real_ids"} <= _offered_actions(client)
    real_ids, real_users = _real_ids(prompt)
    ids, users = _ids_in(lines(_admin_export(client, prompt.tree_id))[0])
    assert ids.isdisjoint(real_ids) and users.isdisjoint(real_users)
    ids, users = _ids_in(lines(_admin_export(client, prompt.tree_id, "download_export_real_ids"))[0])
    assert ids == real_ids and users == real_users


def test_one_permission_decides_every_export_route(client, finished_tree, moderators_group, researchers_group):
    """The API and the admin agree, per role, with `can_export`: researchers and superusers only."""
    from tasks.export import can_export

    prompt, _ = finished_tree
    people = {"contributor": UserFactory(), "staff": _staff_member(), "moderator": _staff_member(moderators_group),
              "researcher": _staff_member(researchers_group),
              "superuser": UserFactory(is_staff=True, is_superuser=True)}
    for role, person in people.items():
        allowed = role in ("researcher", "superuser")
        assert can_export(person) is allowed, role
        assert (token_client(person).get("/api/v1/exports/").status_code == 200) is allowed, role
        assert (token_client(person).get("/api/v1/exports/?records=hf").status_code == 200) is allowed, role
        client.force_login(person)
        assert ("download_export" in _offered_actions(client)) is allowed, role
        assert ("download_export_hf" in _offered_actions(client)) is allowed, role
        assert _admin_export(client, prompt.tree_id).streaming is allowed, role
        assert _admin_export(client, prompt.tree_id, "download_export_hf").streaming is allowed, role


def test_nightly_export_writes_a_dated_file_and_keeps_the_last_n(finished_tree, tmp_path):
    from datetime import datetime, timedelta

    start = datetime(2026, 1, 1, 3, 30, tzinfo=UTC)
    for day in range(4):
        nightly_export(folder=tmp_path, keep=2, now=start + timedelta(days=day))
    files = sorted(p.name for p in tmp_path.glob("oasst-trees-*.jsonl.gz"))
    assert files == ["oasst-trees-20260103-033000.jsonl.gz", "oasst-trees-20260104-033000.jsonl.gz"]
    assert len(list(tmp_path.glob("*.manifest.json"))) == 2
    with gzip.open(tmp_path / files[-1], "rt") as handle:
        assert len(handle.readlines()) == 1
