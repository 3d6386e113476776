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


def test_admin_action_downloads_the_selected_trees(client, finished_tree, moderators_group):
    prompt, _ = finished_tree
    moderator = UserFactory(is_staff=True)
    moderator.groups.add(moderators_group)
    client.force_login(moderator)
    response = client.post("/admin/tasks/messagetree/", {"action": "download_export",
                                                         "_selected_action": [str(prompt.tree_id)]})
    assert response.status_code == 200
    assert lines(response)[0]["message_tree_id"] == str(prompt.tree_id)


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
