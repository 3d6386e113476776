"""Privacy: every model that points at a user is handled by account deletion and appears in "download
my data" (found by enumerating the models, so a new one cannot be forgotten); deletion leaves no
trace of the person anywhere in the database; exports anonymise ids unless told not to."""

import gzip
import json
from datetime import UTC, datetime

import pytest
from allauth.socialaccount.models import SocialAccount
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client
from rest_framework.authtoken.models import Token

from oasst import services
from oasst.models import ModerationEvent
from ranking.models import Ranking
from ranking.services import leaderboard_rebuild, user_scores_refresh
from tasks import services as task_services
from tasks.export import manifest_path_for, nightly_export
from tasks.models import MessageRevision, MessageTree, TreeState
from tests.factories import PASSWORD, UserFactory
from tests.tasks.builders import reply, review, review_of, write_prompt
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

# What account deletion does with each relation: "removed" rows are deleted; "kept" rows stay,
# pointing at the anonymised account (pseudonymous: no name, email or login left on it).
ON_ACCOUNT_DELETE = {
    "oasst.User_groups.user": "removed",
    "oasst.User_user_permissions.user": "removed",
    "oasst.ModerationEvent.actor": "kept",
    "tasks.Message.author": "kept",
    "tasks.MessageRevision.editor": "kept",
    "tasks.Task.user": "kept",
    "tasks.Review.user": "kept",
    "tasks.EmojiReaction.user": "kept",
    "tasks.MessageReport.user": "kept",
    "ranking.Ranking.user": "kept",
    "ranking.ContributionEvent.user": "kept",
    "ranking.UserScore.user": "removed",
    "ranking.LeaderboardEntry.user": "removed",
    "training.TrainingRun.launched_by": "kept",
    "admin.LogEntry.user": "kept",
    "authtoken.Token.user": "removed",
    "account.EmailAddress.user": "removed",
    "socialaccount.SocialAccount.user": "removed",
}

# Where each relation appears in services.user_data_export ("account.x" is a key of the account).
IN_DATA_DOWNLOAD = {
    "oasst.User_groups.user": "account.groups",
    "oasst.User_user_permissions.user": "account.permissions",
    "oasst.ModerationEvent.actor": "moderation_actions",
    "tasks.Message.author": "messages",
    "tasks.MessageRevision.editor": "message_edits",
    "tasks.Task.user": "tasks",
    "tasks.Review.user": "reviews",
    "tasks.EmojiReaction.user": "reactions",
    "tasks.MessageReport.user": "message_reports",
    "ranking.Ranking.user": "rankings",
    "ranking.ContributionEvent.user": "contribution_events",
    "ranking.UserScore.user": "scores",
    "ranking.LeaderboardEntry.user": "leaderboard",
    "training.TrainingRun.launched_by": "training_runs",
    "admin.LogEntry.user": "admin_actions",
    "authtoken.Token.user": "account.api_token",
    "account.EmailAddress.user": "email_addresses",
    "socialaccount.SocialAccount.user": "social_accounts",
}


def user_relations() -> dict[str, tuple]:
    """Every concrete field of every installed model (many-to-many tables included) that points at
    the user model, as "app.Model.field" -> (model, field name). Proxy models share their concrete
    model's table (authtoken's TokenProxy is Token) and are skipped."""
    user_model = get_user_model()
    found = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy:
            continue
        for field in model._meta.get_fields():
            if field.concrete and field.is_relation and field.related_model is user_model:
                found[f"{model._meta.label}.{field.name}"] = (model, field.name)
    return found


def rows_of(relation: str, user) -> int:
    model, field = user_relations()[relation]
    return model.objects.filter(**{field: user.pk}).count()


def test_the_enumeration_finds_the_relations_it_must():
    relations = user_relations()
    assert {"tasks.Message.author", "authtoken.Token.user", "oasst.User_groups.user"} <= set(relations)
    assert not any(label.startswith("authtoken.TokenProxy") for label in relations)


def test_every_relation_to_the_user_is_handled_by_account_deletion():
    assert set(user_relations()) == set(ON_ACCOUNT_DELETE)


def test_every_relation_to_the_user_is_in_the_data_download():
    assert set(user_relations()) == set(IN_DATA_DOWNLOAD)


@pytest.fixture
def ada(small_trees, django_capture_on_commit_callbacks):
    """Ada has a row in every model that points at a user, a live session, and an admin history
    entry about her account; Bob is someone else."""
    ada = UserFactory(username="ada_l", display_name="Ada Lovelace", email="ada.lovelace@example.org",
                      first_name="Augusta", last_name="King", is_staff=True)
    bob = UserFactory(username="bob")
    with django_capture_on_commit_callbacks(execute=True):
        ada_prompt = write_prompt(ada, text="How do tides work, in simple words?")
        review(bob, "label_initial_prompt", values={"spam": 0, "lang_mismatch": 0})
        bob_prompt = write_prompt(bob, text="What is a comet?")
        review(ada, "label_initial_prompt", values={"spam": 0, "lang_mismatch": 0})
    bob_reply = reply(bob, "The moon pulls the water.")
    task_services.emoji_set(user=ada, message_id=bob_reply.pk, emoji="+1", op="add")
    task_services.message_report(user=ada, message_id=bob_reply.pk, reason="off-topic")
    Ranking.objects.create(parent=bob_prompt, user=ada, ranking=[str(bob_reply.pk)], agreement=1.0)
    ada.groups.add(Group.objects.get_or_create(name="moderators")[0])
    ada.user_permissions.add(Permission.objects.get(codename="export_trees"))
    ModerationEvent.objects.create(actor=ada, action="message_delete", target_type="message",
                                   target_id=str(bob_reply.pk), reason="off topic")
    MessageRevision.objects.create(message=bob_reply, editor=ada, text="The mooon pulls the water.")
    TrainingRun.objects.create(kind="reward_model", data_file="/data/trees.jsonl", output_dir="/runs/1",
                               launched_by=ada)
    user_type = ContentType.objects.get_for_model(get_user_model())
    LogEntry.objects.create(user=ada, content_type=ContentType.objects.get_for_model(MessageTree),
                            object_id=str(ada_prompt.tree_id), object_repr="a tree", action_flag=CHANGE)
    LogEntry.objects.create(user=bob, content_type=user_type, object_id=str(ada.pk), object_repr=str(ada),
                            action_flag=CHANGE, change_message="[]")
    Token.objects.create(user=ada)
    SocialAccount.objects.create(user=ada, provider="github", uid="gh-ada-1", extra_data={"login": "ada_l"})
    user_scores_refresh(user=ada)
    leaderboard_rebuild(frame="total")
    session = Client()
    assert session.login(username="ada_l", password=PASSWORD)
    ada.refresh_from_db()
    ada.session_client = session
    return ada


def test_the_fixture_has_a_row_in_every_relation(ada):
    assert {relation: rows_of(relation, ada) > 0 for relation in user_relations()} == \
        {relation: True for relation in user_relations()}


def section(data: dict, path: str):
    value = data
    for key in path.split("."):
        value = value[key]
    return value


def test_the_data_download_has_every_relation_filled(ada):
    data = services.user_data_export(user=ada)
    empty = [relation for relation, path in IN_DATA_DOWNLOAD.items()
             if section(data, path) in ([], {}, None, "") or section(data, path) == {"exists": False, "created": None}]
    assert empty == []
    assert data["moderation_actions"][0]["reason"] == "off topic"
    assert data["training_runs"][0]["data_file"] == "/data/trees.jsonl"
    assert data["account"]["permissions"] == ["tasks.export_trees"]
    assert len(data["sessions"]) == 1 and "session_key" not in data["sessions"][0]
    text = json.dumps(data, cls=DjangoJSONEncoder)
    assert Token.objects.get(user=ada).key not in text  # credentials are not data
    assert Session.objects.get().session_key not in text
    assert "The mooon pulls" not in text  # the text a moderator's edit replaced is Bob's, not hers


def test_account_deletion_removes_or_anonymises_every_relation(ada):
    before = {relation: rows_of(relation, ada) for relation in user_relations()}

    services.account_delete(user=ada)

    after = {relation: rows_of(relation, ada) for relation in user_relations()}
    assert {r: after[r] for r, how in ON_ACCOUNT_DELETE.items() if how == "removed"} == \
        {r: 0 for r, how in ON_ACCOUNT_DELETE.items() if how == "removed"}
    assert {r: after[r] for r, how in ON_ACCOUNT_DELETE.items() if how == "kept"} == \
        {r: before[r] for r, how in ON_ACCOUNT_DELETE.items() if how == "kept"}
    assert ada.session_client.get("/profile/").status_code == 302
    assert not Session.objects.exists()


def every_stored_value() -> str:
    """Every row of every table, as text."""
    return json.dumps([list(model.objects.values()) for model in apps.get_models(include_auto_created=True)
                       if not model._meta.proxy], default=str)


def test_after_account_deletion_no_table_holds_the_persons_name_email_or_login(ada):
    personal = ["ada_l", "Ada Lovelace", "ada.lovelace@example.org", "Augusta", "gh-ada-1"]
    assert all(value in every_stored_value() for value in personal)  # the check can see them

    services.account_delete(user=ada)

    stored = every_stored_value()
    assert [value for value in personal if value in stored] == []
    assert "How do tides work, in simple words?" in stored  # her messages remain, attributed to no one


# --- exports anonymise ids unless told not to ----------------------------------------------------


@pytest.fixture
def finished_tree(tree_settings):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1)
    author = UserFactory(username="tree_author")
    prompt = write_prompt(author, text="What is a tide?")
    review_of(UserFactory(), prompt)
    task_services.lottery_activate(lang="en")
    answer = reply(UserFactory(), "The rise and fall of the sea.")
    review_of(UserFactory(), answer)
    MessageTree.objects.filter(pk=prompt.tree_id).update(state=TreeState.READY_FOR_EXPORT)
    return prompt, answer


def export(tmp_path, name, *args) -> tuple[str, dict]:
    out = tmp_path / name
    call_command("export_trees", str(out), "--no-progress", "--format", "messages", *args,
                 stdout=open(tmp_path / "stdout.txt", "w"), stderr=open(tmp_path / "stderr.txt", "w"))  # noqa: SIM115
    return out.read_text(), json.loads(manifest_path_for(out).read_text())


def real_ids(prompt, answer) -> list[str]:
    return [str(prompt.pk), str(answer.pk), str(prompt.tree_id), f'"user_id": "{prompt.author_id}"',
            f'"user_id": "{answer.author_id}"']


def test_export_trees_anonymises_every_id_by_default_with_a_random_seed_it_never_writes(finished_tree, tmp_path):
    prompt, answer = finished_tree
    first, manifest = export(tmp_path, "a.jsonl")
    second, _ = export(tmp_path, "b.jsonl")
    rows = [json.loads(line) for line in first.splitlines()]
    assert [row["text"] for row in rows] == ["What is a tide?", "The rise and fall of the sea."]
    assert [found for found in real_ids(prompt, answer) if found in first] == []
    assert rows[1]["parent_id"] == rows[0]["message_id"]  # the tree's shape survives
    assert manifest["anonymized"] is True and manifest["anonymize_seed_source"] == "random"
    assert {json.loads(line)["message_id"] for line in second.splitlines()}.isdisjoint(
        {row["message_id"] for row in rows})  # two releases with random seeds cannot be linked


def test_export_trees_uses_the_operators_seed_for_stable_pseudonyms_and_never_writes_it(finished_tree, tmp_path,
                                                                                        settings):
    settings.EXPORT_ANONYMIZE_SEED = "operator-secret-seed-2026"
    first, manifest = export(tmp_path, "a.jsonl")
    second, _ = export(tmp_path, "b.jsonl")
    assert first == second
    assert manifest["anonymize_seed_source"] == "settings"
    assert "operator-secret-seed-2026" not in first + json.dumps(manifest)
    _, explicit = export(tmp_path, "c.jsonl", "--anonymize", "my-seed")
    assert explicit["anonymize_seed_source"] == "option" and "my-seed" not in json.dumps(explicit)


def test_export_trees_keeps_the_real_ids_only_when_asked(finished_tree, tmp_path):
    prompt, answer = finished_tree
    raw, manifest = export(tmp_path, "raw.jsonl", "--no-anonymize")
    assert all(found in raw for found in real_ids(prompt, answer))
    assert manifest["anonymized"] is False and "anonymize_seed_source" not in manifest


def test_export_trees_refuses_a_seed_together_with_no_anonymize(finished_tree, tmp_path):
    with pytest.raises(CommandError, match="not allowed with"):
        export(tmp_path, "x.jsonl", "--no-anonymize", "--anonymize", "s")
    assert not (tmp_path / "x.jsonl").exists()


def test_the_nightly_export_is_anonymised(finished_tree, tmp_path):
    prompt, answer = finished_tree
    result = nightly_export(folder=tmp_path, keep=2, now=datetime(2026, 1, 1, 3, 30, tzinfo=UTC))
    with gzip.open(result.path, "rt") as handle:
        text = handle.read()
    assert "What is a tide?" in text
    assert [found for found in real_ids(prompt, answer) if found in text] == []
    manifest = json.loads(manifest_path_for(result.path).read_text())
    assert manifest["anonymized"] is True and manifest["anonymize_seed_source"] == "random"
