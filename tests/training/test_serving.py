"""The reward model in service: promotion (refusals, permission, one at a time, audit), every accepted reply scored
with the run's id, and the re-scoring after a promotion (batched, resumable, idempotent), from the admin too."""

import json
import shutil
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import IntegrityError, transaction

from oasst.errors import Conflict, Forbidden, ServiceError
from oasst.models import ModerationEvent
from tasks.models import Message, MessageTree, Role, TreeState
from tasks.signals import reply_accepted
from tests.conftest import token_client
from tests.factories import AdminFactory, UserFactory
from tests.tasks.test_api_flow import good_labels, request_task, submit
from training import serving
from training.jobs import replies_rescore_job
from training.models import TrainingRun

from .tiny_models import MARKER


def reward_run(folder, **fields) -> TrainingRun:
    return TrainingRun.objects.create(**{
        "kind": TrainingRun.Kind.REWARD_MODEL, "status": TrainingRun.Status.SUCCEEDED, "data_file": "export.jsonl",
        "output_dir": str(folder), **fields})


def promoter(**fields):
    user = UserFactory(is_staff=True, **fields)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["promote_trainingrun", "view_trainingrun"]))
    return type(user).objects.get(pk=user.pk)  # a fresh user: no stale permission cache


def fake_model_folder(tmp_path, metrics: dict | None) -> str:
    """A folder that looks like a reward model's to the checks (they read reward_model.json and metrics.json)."""
    (tmp_path / "reward_model.json").write_text("{}")
    if metrics is not None:
        (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    return str(tmp_path)


def live_tree(replies: int = 2) -> list[Message]:
    """A tree whose replies were accepted, plus one deleted and one rejected reply that are never scored."""
    tree = MessageTree.objects.create(state=TreeState.GROWING, lang="en", goal_tree_size=12, max_depth=3,
                                      max_children_count=5)
    prompt = Message.objects.create(tree=tree, role=Role.PROMPTER, text="the quick dog and the river", lang="en",
                                    depth=0, review_result=True)

    def reply(text, **extra):
        return Message.objects.create(tree=tree, parent=prompt, role=Role.ASSISTANT, text=text, lang="en", depth=1,
                                      **extra)

    reply("gone", deleted=True, review_result=True)
    reply("rejected", review_result=False)
    return [reply(f"a warm stone {MARKER if index % 2 else ''} near the house {index}", review_result=True)
            for index in range(replies)]


def audit(action: str):
    return list(ModerationEvent.objects.filter(action=action, target_type="training_run"))


HELD_OUT_ABOVE_LENGTH = {"accuracy": 0.9, "pairs": 40, "length_rule": {"accuracy": 0.5}}


def promotable_copy(marker_reward_model, tmp_path):
    """The tiny marker model (it scores for real) in a folder whose held-out evaluation is above the length rule.
    The tiny model's own held-out accuracy (about 0.8 against a length rule of 0.8 on the synthetic export) varies
    with the test order's random state, so the promotion rule is tested on stated figures here and in the
    refusals below, not on a training outcome."""
    folder = tmp_path / "marker-rm"
    shutil.copytree(marker_reward_model, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps(metrics | {"eval": metrics["eval"] | HELD_OUT_ABOVE_LENGTH}))
    return folder


@pytest.fixture
def marker_run(marker_reward_model, db, tmp_path):
    return reward_run(promotable_copy(marker_reward_model, tmp_path))


def test_a_run_above_the_length_rule_on_its_own_held_out_pairs_is_promotable(marker_run):
    assert serving.check_promotable(marker_run) == (0.9, 0.5)


# promotion: refusals, permission, one at a time, audit -------------------------------------------------------------

@pytest.mark.parametrize(("fields", "metrics", "code"), [
    ({"kind": TrainingRun.Kind.PPO}, {"eval": {"accuracy": 0.9, "length_rule": {"accuracy": 0.5}}},
     "not_reward_model"),
    ({"status": TrainingRun.Status.FAILED}, {"eval": {"accuracy": 0.9, "length_rule": {"accuracy": 0.5}}},
     "not_succeeded"),
    ({}, {"eval": {"accuracy": 0.55, "length_rule": {"accuracy": 0.6}}}, "below_length_rule"),
    ({}, {"eval": {"accuracy": 0.6, "length_rule": {"accuracy": 0.6}}}, "below_length_rule"),
    ({}, {"steps": []}, "no_evaluation"),
    ({}, None, "no_evaluation"),
])
@pytest.mark.django_db
def test_promotion_is_refused_with_a_clear_message_and_nothing_changes(tmp_path, fields, metrics, code):
    run = reward_run(fake_model_folder(tmp_path, metrics), **fields)
    with pytest.raises(ServiceError) as refused:
        serving.reward_model_promote(run=run, actor=AdminFactory())
    assert refused.value.code == code and f"Run {run.pk}" in refused.value.messages[0]
    assert not TrainingRun.objects.filter(in_service=True).exists() and not audit("reward_model_promote")


@pytest.mark.django_db
def test_promotion_of_a_run_whose_folder_is_missing_is_refused(tmp_path):
    run = reward_run(tmp_path / "deleted")
    with pytest.raises(ServiceError, match="folder of run .* is missing") as refused:
        serving.reward_model_promote(run=run, actor=AdminFactory())
    assert refused.value.code == "folder_missing"
    assert not TrainingRun.objects.filter(in_service=True).exists() and not audit("reward_model_promote")


@pytest.mark.parametrize("actor", [
    lambda: UserFactory(), lambda: UserFactory(is_staff=True), lambda: promoter(is_active=False)])
def test_promotion_needs_an_active_staff_account_with_the_permission(marker_run, actor):
    with pytest.raises(Forbidden):
        serving.reward_model_promote(run=marker_run, actor=actor())
    marker_run.refresh_from_db()
    assert not marker_run.in_service and not audit("reward_model_promote")


def test_one_run_in_service_promoting_another_takes_the_first_out_and_both_are_audited(marker_run, tmp_path):
    moderator = promoter()
    serving.reward_model_promote(run=marker_run, actor=moderator, reason="first model")
    second = reward_run(fake_model_folder(tmp_path, {"eval": {"accuracy": 0.9, "length_rule": {"accuracy": 0.5}}}))
    serving.reward_model_promote(run=second, actor=moderator, reason="beats the model in service")
    assert list(TrainingRun.objects.filter(in_service=True)) == [second]
    second.refresh_from_db()
    assert second.in_service_since is not None
    events = sorted(audit("reward_model_promote"), key=lambda event: event.pk)
    assert [(event.actor, event.target_id, event.reason, event.before, event.after["in_service"])
            for event in events] == [
        (moderator, str(marker_run.pk), "first model", {"in_service": None}, marker_run.pk),
        (moderator, str(second.pk), "beats the model in service", {"in_service": marker_run.pk}, second.pk),
    ]
    with pytest.raises(Conflict, match="already in service"):
        serving.reward_model_promote(run=second, actor=moderator)


def test_the_database_refuses_a_second_run_in_service(marker_run, tmp_path):
    serving.reward_model_promote(run=marker_run, actor=AdminFactory())
    other = reward_run(tmp_path)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.filter(pk=other.pk).update(in_service=True)


def test_taking_a_run_out_of_service_is_audited_and_refused_when_it_is_not_in_service(marker_run):
    moderator = promoter()
    with pytest.raises(Conflict, match="not in service"):
        serving.reward_model_retire(run=marker_run, actor=moderator)
    with pytest.raises(Conflict, match="not in service"):
        serving.reward_model_rescore(run=marker_run, actor=moderator)
    serving.reward_model_promote(run=marker_run, actor=moderator)
    with pytest.raises(Forbidden):
        serving.reward_model_retire(run=marker_run, actor=UserFactory(is_staff=True))
    serving.reward_model_retire(run=marker_run, actor=moderator, reason="replaced")
    marker_run.refresh_from_db()
    assert not marker_run.in_service and marker_run.in_service_since is None
    assert [(event.actor, event.reason) for event in audit("reward_model_retire")] == [(moderator, "replaced")]


# scoring -----------------------------------------------------------------------------------------------------------

def test_an_accepted_reply_sends_a_scoring_job_only_with_a_model_in_service(marker_run,
                                                                           django_capture_on_commit_callbacks):
    reply = live_tree(1)[0]
    with django_capture_on_commit_callbacks() as callbacks:
        reply_accepted.send(sender=Message, message_id=reply.pk)
    assert callbacks == []
    with django_capture_on_commit_callbacks():  # the promotion's re-scoring is not run here
        serving.reward_model_promote(run=marker_run, actor=AdminFactory())
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        reply_accepted.send(sender=Message, message_id=reply.pk)
    assert len(callbacks) == 1
    reply.refresh_from_db()
    assert reply.reward_run_id == marker_run.pk and reply.reward_score is not None


@pytest.mark.django_db(transaction=True)
def test_a_reply_accepted_through_the_api_is_scored_by_the_model_in_service(small_trees, marker_reward_model,
                                                                           tmp_path):
    run = reward_run(promotable_copy(marker_reward_model, tmp_path))
    serving.reward_model_promote(run=run, actor=AdminFactory())
    alice, bob, carol, dave = (token_client(UserFactory(username=name)) for name in ("alice", "bob", "carol", "dave"))
    prompt_task = request_task(alice, "initial_prompt")
    prompt = submit(alice, prompt_task, {"text": "the quick dog and the river"})
    review = request_task(bob, "label_initial_prompt")
    submit(bob, review, {"labels": good_labels(review)})
    replies = []
    for client, text in ((bob, f"a warm stone {MARKER} near the house"), (carol, "a warm stone near the house")):
        replies.append(submit(client, request_task(client, "assistant_reply"), {"text": text}))
    assert not Message.objects.filter(reward_score__isnull=False).exists()  # not accepted yet
    for _ in replies:
        task = request_task(dave, "label_assistant_reply")
        submit(dave, task, {"labels": good_labels(task)})
    scored = {str(message.pk): message for message in Message.objects.filter(pk__in=[r["id"] for r in replies])}
    assert {message.reward_run_id for message in scored.values()} == {run.pk}
    better, worse = (scored[reply["id"]].reward_score for reply in replies)
    assert better > worse
    assert Message.objects.get(pk=prompt["id"]).reward_score is None


def test_re_scoring_resumes_after_an_interruption_and_skips_what_the_run_scored(marker_run, monkeypatch,
                                                                              django_capture_on_commit_callbacks):
    replies = live_tree(3) + live_tree(3)
    monkeypatch.setattr(serving, "SCORING_BATCH", 2)
    real, batches, crash = serving.score_replies, [], {"on": True}

    def crash_on_the_second_batch(model, tokenizer, items, **kwargs):
        batches.append(len(items))
        if len(batches) == 2 and crash["on"]:
            raise RuntimeError("worker lost")
        return real(model, tokenizer, items, **kwargs)

    monkeypatch.setattr(serving, "score_replies", crash_on_the_second_batch)
    with django_capture_on_commit_callbacks() as callbacks:
        serving.reward_model_promote(run=marker_run, actor=AdminFactory())
    assert len(callbacks) == 1  # the re-scoring job, sent once the promotion commits (run here by hand)
    with pytest.raises(RuntimeError, match="worker lost"):
        replies_rescore_job.delay(marker_run.pk).get()
    assert serving.rescore_progress(marker_run) == (2, 6)
    first = {message.pk: message.reward_score for message in Message.objects.filter(reward_run_id=marker_run.pk)}

    crash["on"] = False  # the job sent again resumes: only the four replies left are scored
    assert replies_rescore_job.delay(marker_run.pk).get() == 4
    assert batches == [2, 2, 2, 2]
    assert serving.rescore_progress(marker_run) == (6, 6)
    assert {pk: Message.objects.get(pk=pk).reward_score for pk in first} == first
    assert set(Message.objects.filter(reward_run_id=marker_run.pk).values_list("pk", flat=True)) == {
        reply.pk for reply in replies}
    assert replies_rescore_job.delay(marker_run.pk).get() == 0  # idempotent


def test_re_scoring_stops_when_the_run_leaves_service(marker_run):
    live_tree(2)
    assert replies_rescore_job.delay(marker_run.pk).get() == 0
    assert serving.rescore_progress(marker_run) == (0, 2)


def test_score_messages_stores_the_id_of_the_run_that_wrote_the_model(marker_run):
    reply = live_tree(1)[0]
    call_command("score_messages", reward_model=marker_run.output_dir, tree=str(reply.tree_id), stdout=StringIO())
    reply.refresh_from_db()
    assert reply.reward_score is not None and reply.reward_run_id == marker_run.pk


# the admin ---------------------------------------------------------------------------------------------------------

def service_url(run, step):
    return f"/admin/training/trainingrun/{run.pk}/service/{step}/"


def test_a_moderator_promotes_from_the_run_page_after_a_confirmation(client, marker_run,
                                                                   django_capture_on_commit_callbacks):
    moderator = promoter()
    client.force_login(moderator)
    change = f"/admin/training/trainingrun/{marker_run.pk}/change/"
    page = client.get(change).content.decode()
    assert "Not in service." in page and service_url(marker_run, "promote") in page
    confirmation = client.get(service_url(marker_run, "promote"))
    assert confirmation.status_code == 200 and "Put in service" in confirmation.content.decode()
    marker_run.refresh_from_db()
    assert not marker_run.in_service  # a GET changes nothing
    response = client.post(service_url(marker_run, "promote"), {"choice": "first model", "apply": "1"})
    assert response.status_code == 302 and response["Location"] == change
    marker_run.refresh_from_db()
    assert marker_run.in_service
    assert [(event.actor, event.reason) for event in audit("reward_model_promote")] == [(moderator, "first model")]
    page = client.get(change).content.decode()
    assert "live replies scored by this run: 0 of 0" in page and service_url(marker_run, "retire") in page
    reply = live_tree(1)[0]  # accepted while no job ran (a worker down): the re-scoring sent again scores it
    with django_capture_on_commit_callbacks(execute=True):
        client.post(service_url(marker_run, "rescore"), {"choice": "resume after a worker stopped", "apply": "1"})
    reply.refresh_from_db()
    assert reply.reward_run_id == marker_run.pk and len(audit("reward_model_rescore")) == 1
    assert "live replies scored by this run: 1 of 1" in client.get(change).content.decode()
    client.post(service_url(marker_run, "retire"), {"choice": "replaced", "apply": "1"})
    marker_run.refresh_from_db()
    assert not marker_run.in_service


def test_the_admin_shows_a_refusal_and_changes_nothing(client, tmp_path, db):
    run = reward_run(fake_model_folder(tmp_path, {"eval": {"accuracy": 0.5, "length_rule": {"accuracy": 0.6}}}))
    client.force_login(promoter())
    response = client.post(service_url(run, "promote"), {"choice": "first model", "apply": "1"}, follow=True)
    assert "does not beat the length rule" in response.content.decode()
    run.refresh_from_db()
    assert not run.in_service and not audit("reward_model_promote")


def test_staff_without_the_permission_sees_no_button_and_is_refused(client, marker_run):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_trainingrun"))
    client.force_login(staff)
    page = client.get(f"/admin/training/trainingrun/{marker_run.pk}/change/").content.decode()
    assert "Not in service." in page and service_url(marker_run, "promote") not in page
    assert client.get(service_url(marker_run, "promote")).status_code == 403
    assert client.post(service_url(marker_run, "promote"), {"choice": "first model", "apply": "1"}).status_code == 403
    marker_run.refresh_from_db()
    assert not marker_run.in_service and not audit("reward_model_promote")
