"""Champion / challenger retraining: the decision on stated figures, one end-to-end challenge on tiny models
(its outcome checked against the figures it recorded), the refusals (no ready trees, one challenge at a time,
permission), cancellation, the weekly schedule (off under the embedded default) and the admin."""

import time

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured

from oasst import embedded
from oasst.celery import app
from oasst.env import Env
from oasst.errors import Conflict, Forbidden
from oasst.models import ModerationEvent
from tasks.export import ExportResult
from tests.factories import UserFactory
from training import challenge, services
from training.data import file_sha256
from training.jobs import reward_model_challenge_job, run_queued
from training.models import RewardModelEvaluation, TrainingRun, TrainingRunParent

from .test_serving import marker_run, promoter  # noqa: F401 - marker_run is a fixture

# the decision, on stated figures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("challenger", "length_rule", "champion", "margin", "promoted", "words"), [
    (0.80, 0.60, 0.70, 0.02, True, "beats the champion"),
    (0.72, 0.60, 0.70, 0.02, True, "beats the champion"),  # exactly the margin
    (0.71, 0.60, 0.70, 0.02, False, "does not beat the champion"),
    (0.65, 0.60, 0.70, 0.02, False, "does not beat the champion"),
    (0.90, 0.90, 0.50, 0.02, False, "does not beat the length rule"),
    (0.70, 0.60, None, 0.02, True, "no model in service"),
    (0.55, 0.60, None, 0.02, False, "does not beat the length rule"),
    (0.70, 0.60, 0.70, 0.0, True, "beats the champion"),
])
def test_the_challenger_is_promoted_only_when_better_by_the_margin_and_above_the_length_rule(
        challenger, length_rule, champion, margin, promoted, words):
    decision, reason = challenge.challenge_decision(challenger=challenger, length_rule=length_rule,
                                                    champion=champion, margin=margin)
    assert decision is promoted and words in reason
    assert reason.startswith("promoted" if promoted else "rejected")


# end to end, on tiny models ---------------------------------------------------------------------------------------

@pytest.fixture
def synthetic_ready_trees(synthetic_export, tiny_bert, monkeypatch, settings, tmp_path):
    """The export step hands over the synthetic export (60 trees the marker word decides), and the challenger is
    the tiny BERT with the marker model's settings: the "current defaults" at a size a test can train."""
    settings.EXPORT_DIR = str(tmp_path / "exports")
    exports = []

    def export(*, folder, keep):
        exports.append(folder)
        return ExportResult(path=str(synthetic_export), format="jsonl", trees=60,
                            sha256=file_sha256(str(synthetic_export)))

    monkeypatch.setattr(challenge, "nightly_export", export)
    monkeypatch.setattr(challenge, "challenger_parameters", lambda: {
        "base_model": str(tiny_bert), "epochs": 8, "lr": 2e-3, "batch_size": 16, "max_length": 64,
        "eval_fraction": 0.25, "seed": 0})
    return exports


def test_without_a_champion_the_challenger_goes_in_service_if_it_passes_the_promotion_rules(
        synthetic_ready_trees, db):
    assert reward_model_challenge_job.apply().get() == TrainingRun.Status.SUCCEEDED
    facts = TrainingRun.objects.get(kind=TrainingRun.Kind.CHALLENGE).metrics["challenge"]
    challenger = TrainingRun.objects.get(pk=facts["challenger_run"])
    assert facts["champion_run"] is None and facts["champion_accuracy"] is None
    beats_length_rule = facts["challenger_accuracy"] > facts["length_rule"]
    assert facts["decision"] == ("promoted" if beats_length_rule else "rejected")
    assert challenger.in_service is beats_length_rule
    assert RewardModelEvaluation.objects.get().run == challenger


def test_a_challenge_trains_compares_on_the_same_pairs_and_decides_as_its_figures_say(
        synthetic_ready_trees, marker_run, settings):  # noqa: F811 - the fixture
    marker_run.in_service = True
    marker_run.save()
    assert reward_model_challenge_job.apply().get() == TrainingRun.Status.SUCCEEDED  # beat sends it without a run
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.CHALLENGE)
    facts = run.metrics["challenge"]
    challenger = TrainingRun.objects.get(pk=facts["challenger_run"])
    assert challenger.kind == TrainingRun.Kind.REWARD_MODEL and challenger.status == TrainingRun.Status.SUCCEEDED
    assert facts["champion_run"] == marker_run.pk and facts["margin"] == settings.CHALLENGER_MARGIN
    assert TrainingRunParent.objects.get(run=run).parent == marker_run  # lineage: the champion it challenged
    # both scored on the same held-out pairs, recorded as evaluations on the same file
    evaluations = {row.run_id: row for row in RewardModelEvaluation.objects.all()}
    assert set(evaluations) == {marker_run.pk, challenger.pk}
    assert {(row.data_sha256, row.pairs) for row in evaluations.values()} == {(challenger.data_sha256, facts["pairs"])}
    assert facts["challenger_accuracy"] == evaluations[challenger.pk].accuracy
    assert facts["champion_accuracy"] == evaluations[marker_run.pk].accuracy
    promoted, reason = challenge.challenge_decision(
        challenger=facts["challenger_accuracy"], length_rule=facts["length_rule"],
        champion=facts["champion_accuracy"], margin=facts["margin"])
    assert facts["decision"] == ("promoted" if promoted else "rejected")
    assert facts["reason"] == reason or facts["reason"].startswith("rejected by the promotion rules")
    marker_run.refresh_from_db()
    challenger.refresh_from_db()
    assert challenger.in_service is (facts["decision"] == "promoted")
    assert marker_run.in_service is (facts["decision"] != "promoted")
    if facts["decision"] == "promoted":
        event = ModerationEvent.objects.get(action="reward_model_promote")
        assert event.actor is None and f"challenge run {run.pk}" in event.reason


def test_with_no_ready_tree_the_challenge_fails_clearly_and_nothing_is_trained_or_promoted(db, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    assert reward_model_challenge_job.apply().get() == TrainingRun.Status.FAILED
    run = TrainingRun.objects.get()
    assert run.kind == TrainingRun.Kind.CHALLENGE and "No conversation tree is ready for export" in run.error
    assert run.metrics["challenge"]["export_trees"] == 0
    assert not TrainingRun.objects.filter(in_service=True).exists()


def test_beat_does_not_start_a_second_challenge_while_one_is_active(db):
    active = TrainingRun.objects.create(kind=TrainingRun.Kind.CHALLENGE, status=TrainingRun.Status.RUNNING)
    assert reward_model_challenge_job.apply().get() == "a challenge is already queued or running"
    assert list(TrainingRun.objects.all()) == [active]


# cancellation -------------------------------------------------------------------------------------------------------

def launcher():
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["launch_run", "view_trainingrun"]))
    return type(user).objects.get(pk=user.pk)


def test_a_challenge_cancelled_during_its_export_stops_before_training(db, monkeypatch, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    user = launcher()

    def export_then_cancelled(*, folder, keep):
        run = TrainingRun.objects.get(kind=TrainingRun.Kind.CHALLENGE)
        services.training_run_cancel(run=run, actor=user, reason="taking too long")
        return ExportResult(path=str(tmp_path / "x.jsonl"), format="jsonl", trees=3, sha256="0" * 64)

    monkeypatch.setattr(challenge, "nightly_export", export_then_cancelled)
    assert reward_model_challenge_job.apply().get() == TrainingRun.Status.CANCELLED
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.CANCELLED and "taking too long" in run.error
    assert ModerationEvent.objects.get(action="training_run_cancel").actor == user


def test_cancelling_a_challenge_cancels_its_challenger(db):
    challenger = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.RUNNING)
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.CHALLENGE, status=TrainingRun.Status.RUNNING,
                                     metrics={"challenge": {"challenger_run": challenger.pk}})
    services.training_run_cancel(run=run, actor=launcher())
    assert {row.status for row in TrainingRun.objects.all()} == {TrainingRun.Status.CANCELLED}


def test_a_running_run_cancelled_stops_at_its_next_progress_report_and_stays_cancelled(db):
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL)
    user = launcher()

    def train(claimed, progress):
        progress(10, "step 1")
        services.training_run_cancel(run=claimed, actor=user)
        progress(20, "step 2")
        raise AssertionError("never reached: the job stops at the report")

    assert run_queued(run.pk, train) == TrainingRun.Status.CANCELLED
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED and run.progress == 10


def test_cancelling_is_refused_for_a_finished_run_and_without_the_permission(db):
    done = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED)
    with pytest.raises(Conflict, match="only a queued or running run can be cancelled"):
        services.training_run_cancel(run=done, actor=launcher())
    queued = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL)
    with pytest.raises(Forbidden):
        services.training_run_cancel(run=queued, actor=UserFactory(is_staff=True))
    assert {row.status for row in TrainingRun.objects.all()} == {TrainingRun.Status.SUCCEEDED,
                                                                 TrainingRun.Status.QUEUED}
    assert not ModerationEvent.objects.exists()


# the schedule -------------------------------------------------------------------------------------------------------

def test_the_challenge_is_scheduled_weekly_on_the_training_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["reward-model-challenge"]
    assert entry["task"] == challenge.CHALLENGE_JOB
    assert entry["schedule"] == Env({}).crontab("X", "0 4 * * 0")
    assert app.amqp.router.route({}, challenge.CHALLENGE_JOB)["queue"].name == "training"
    assert settings.CHALLENGER_MARGIN == 0.02


def test_the_schedule_is_a_strictly_parsed_crontab_line():
    assert Env({"S": "30 2 * * 1"}).crontab("S", "0 4 * * 0") == Env({}).crontab("S", "30 2 * * 1")
    for bad in ("weekly", "0 4 * *", "99 4 * * 0"):
        with pytest.raises(ImproperlyConfigured, match="OASST_CHALLENGER_SCHEDULE"):
            Env({"OASST_CHALLENGER_SCHEDULE": bad}).crontab("OASST_CHALLENGER_SCHEDULE", "0 4 * * 0")


@pytest.mark.parametrize(("skipped", "runs"), [(None, False), (set(), True)])
def test_the_embedded_worker_runs_the_challenge_only_when_enabled(db, settings, monkeypatch, skipped, runs):
    settings.CELERY_BEAT_SCHEDULE = {"reward-model-challenge": {**settings.CELERY_BEAT_SCHEDULE[
        "reward-model-challenge"], "schedule": 0.01}}
    settings.EMBEDDED_SCHEDULE = {}
    if skipped is not None:  # OASST_CHALLENGER_EMBEDDED=true
        settings.EMBEDDED_SKIPPED = skipped
    sent = []
    monkeypatch.setattr(app.tasks[challenge.CHALLENGE_JOB], "apply", lambda **kwargs: sent.append(kwargs))
    worker = embedded.EmbeddedWorker()
    worker.tick()
    time.sleep(0.05)
    worker.tick()
    assert bool(sent) is runs


# the admin ----------------------------------------------------------------------------------------------------------

CHANGELIST = "/admin/training/trainingrun/"


def test_a_moderator_runs_a_challenge_now_from_the_runs_list(client, db, settings, tmp_path,
                                                             django_capture_on_commit_callbacks):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    client.force_login(promoter())
    assert "Run a challenge now" in client.get(CHANGELIST).content.decode()
    with django_capture_on_commit_callbacks(execute=True):  # Celery eager: the job runs at once
        response = client.post(f"{CHANGELIST}challenge/")
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{CHANGELIST}{run.pk}/change/"
    page = client.get(response["Location"]).content.decode()
    assert "Champion / challenger" in page and "No conversation tree is ready for export" in page


def test_a_second_challenge_is_refused_in_the_admin_and_nothing_is_queued(client, db):
    active = TrainingRun.objects.create(kind=TrainingRun.Kind.CHALLENGE)
    client.force_login(promoter())
    response = client.post(f"{CHANGELIST}challenge/", follow=True)
    assert f"Challenge run {active.pk} is queued: one challenge at a time." in response.content.decode()
    assert list(TrainingRun.objects.all()) == [active]


def test_staff_without_the_promote_permission_has_no_challenge_button_and_is_refused(client, db):
    client.force_login(launcher())
    assert "Run a challenge now" not in client.get(CHANGELIST).content.decode()
    assert client.post(f"{CHANGELIST}challenge/").status_code == 403
    assert not TrainingRun.objects.exists()


def test_a_run_is_cancelled_from_its_page_after_a_confirmation(client, db):
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.CHALLENGE)
    client.force_login(launcher())
    change, cancel = f"{CHANGELIST}{run.pk}/change/", f"{CHANGELIST}{run.pk}/cancel/"
    assert cancel in client.get(change).content.decode()
    assert client.get(cancel).status_code == 200
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.QUEUED  # a GET changes nothing
    response = client.post(cancel, {"choice": "started by mistake", "apply": "1"})
    assert response.status_code == 302 and response["Location"] == change
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert cancel not in client.get(change).content.decode()
    refused = client.post(cancel, {"choice": "started by mistake", "apply": "1"}, follow=True).content.decode()
    assert "only a queued or running run can be cancelled" in refused


def test_a_viewer_without_the_launch_permission_cannot_cancel(client, db):
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.CHALLENGE)
    client.force_login(promoter())
    cancel = f"{CHANGELIST}{run.pk}/cancel/"
    assert cancel not in client.get(f"{CHANGELIST}{run.pk}/change/").content.decode()
    assert client.post(cancel, {"choice": "started by mistake", "apply": "1"}).status_code == 403
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.QUEUED
