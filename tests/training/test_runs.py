"""Training runs launched from the admin and run as Celery jobs, the stale-run check, and score_messages."""

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.utils import timezone

from tasks.models import Message, MessageTree, Role, TreeState
from tests.factories import AdminFactory, UserFactory
from training import services
from training.jobs import reward_model_train_job, runs_fail_stale_job
from training.models import TrainingRun

from .tiny_models import MARKER, write_synthetic_export

TINY_PARAMETERS = {"epochs": 8, "lr": 2e-3, "batch_size": 16, "max_length": 64, "eval_fraction": 0.25, "seed": 0}


def queue_run(data, output_root, base_model) -> TrainingRun:
    return services.training_run_queue(
        kind=TrainingRun.Kind.REWARD_MODEL,
        parameters={**TINY_PARAMETERS, "base_model": str(base_model)},
        data_file=str(data),
        data_sha256="0" * 64,
        output_root=str(output_root),
    )


@pytest.fixture(scope="module")
def job_run(tiny_bert, tmp_path_factory, django_db_setup, django_db_blocker):
    folder = tmp_path_factory.mktemp("job")
    data = folder / "export.jsonl"
    write_synthetic_export(data, trees=60, seed=1)
    with django_db_blocker.unblock():
        run = queue_run(data, folder / "models", tiny_bert)
        status = reward_model_train_job.delay(run.pk).get()
        run.refresh_from_db()
    yield run, status
    with django_db_blocker.unblock():
        run.delete()


def test_the_job_trains_a_queued_run_to_succeeded_with_metrics_and_outputs(job_run):
    run, status = job_run
    assert status == run.status == TrainingRun.Status.SUCCEEDED
    assert run.progress == 100 and run.error == ""
    assert run.started_at <= run.heartbeat_at <= run.finished_at
    assert "step" in run.log_tail
    assert run.metrics["eval"]["pairs"] == 45 and run.metrics["eval"]["accuracy"] >= 0.6
    assert run.output_dir.endswith(f"reward_model-run-{run.pk}")
    for name in ("model.safetensors", "metrics.json", "README.md", "accuracy.png"):
        assert (Path(run.output_dir) / name).is_file(), name


@pytest.mark.django_db
def test_the_job_leaves_a_run_that_is_not_queued_alone(tmp_path, tiny_bert):
    run = queue_run(tmp_path / "none.jsonl", tmp_path, tiny_bert)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.CANCELLED)
    assert reward_model_train_job.delay(run.pk).get() == "not queued"
    assert TrainingRun.objects.get(pk=run.pk).status == TrainingRun.Status.CANCELLED


@pytest.mark.django_db
def test_a_bad_data_file_ends_the_run_failed_with_the_error_and_traceback(tmp_path, tiny_bert):
    data = tmp_path / "broken.jsonl"
    data.write_text("this is not json\n")
    run = queue_run(data, tmp_path / "models", tiny_bert)
    assert reward_model_train_job.delay(run.pk).get() == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.finished_at is not None
    assert run.error.endswith("broken.jsonl:1: not a JSON object (Expecting value)")
    assert "Traceback" in run.log_tail


@pytest.mark.django_db
def test_a_crash_in_training_ends_the_run_failed_with_the_exception(tmp_path, tiny_bert, monkeypatch):
    def crash(config, progress=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("training.jobs.train_reward_model", crash)
    run = queue_run(tmp_path / "export.jsonl", tmp_path, tiny_bert)
    reward_model_train_job.delay(run.pk).get()
    run.refresh_from_db()
    assert (run.status, run.error) == (TrainingRun.Status.FAILED, "RuntimeError: out of memory")


@pytest.mark.django_db
def test_stale_job_fails_only_running_runs_silent_for_longer_than_the_setting(settings):
    settings.TRAINING_STALE_MINUTES = 30
    now = timezone.now()

    def run(status, heartbeat_minutes_ago):
        return TrainingRun.objects.create(
            kind=TrainingRun.Kind.REWARD_MODEL,
            status=status,
            data_file="x.jsonl",
            output_dir="/tmp/x",
            started_at=now - timedelta(hours=2),
            heartbeat_at=now - timedelta(minutes=heartbeat_minutes_ago),
        )

    silent = run(TrainingRun.Status.RUNNING, 31)
    alive = run(TrainingRun.Status.RUNNING, 5)
    queued = run(TrainingRun.Status.QUEUED, 120)
    assert runs_fail_stale_job.delay().get() == 1
    silent.refresh_from_db()
    assert silent.status == TrainingRun.Status.FAILED and "30 minutes" in silent.error
    assert silent.finished_at is not None
    assert TrainingRun.objects.get(pk=alive.pk).status == TrainingRun.Status.RUNNING
    assert TrainingRun.objects.get(pk=queued.pk).status == TrainingRun.Status.QUEUED


@pytest.fixture
def export_dir(settings, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    write_synthetic_export(folder / "oasst-trees-2026-11-25.jsonl", trees=4, seed=3)
    (folder / "notes.txt").write_text("not an export")
    settings.EXPORT_DIR = str(folder)
    return folder


LAUNCH = "/admin/training/trainingrun/add/"


@pytest.mark.django_db
def test_a_staff_user_without_the_launch_permission_is_refused(client, export_dir):
    client.force_login(UserFactory(is_staff=True))
    assert client.get(LAUNCH).status_code == 403
    assert client.post(LAUNCH, {"data_file": "oasst-trees-2026-11-25.jsonl"}).status_code == 403
    assert not TrainingRun.objects.filter(launched_by__isnull=False).exists()  # session fixtures record runs too


@pytest.mark.django_db
def test_a_staff_user_with_the_launch_permission_sees_the_export_files(client, export_dir):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="launch_run", content_type__app_label="training"))
    client.force_login(staff)
    page = client.get(LAUNCH)
    assert page.status_code == 200
    assert "oasst-trees-2026-11-25.jsonl" in page.content.decode() and "notes.txt" not in page.content.decode()


@pytest.mark.django_db
def test_a_superuser_launches_a_queued_run_enqueued_after_commit(
    client, export_dir, tiny_bert, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(reward_model_train_job, "delay", enqueued.append)
    admin = AdminFactory()
    client.force_login(admin)
    form = {"data_file": "oasst-trees-2026-11-25.jsonl", "base_model": str(tiny_bert), "epochs": "2", "lr": "0.001",
            "batch_size": "4"}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(LAUNCH, form)
    run = TrainingRun.objects.get(launched_by=admin)
    assert response.status_code == 302 and response["Location"].endswith(f"/{run.pk}/change/")
    assert len(callbacks) == 1 and enqueued == [run.pk]
    assert (run.status, run.kind, run.launched_by) == (TrainingRun.Status.QUEUED, TrainingRun.Kind.REWARD_MODEL, admin)
    assert run.data_file == str(export_dir / "oasst-trees-2026-11-25.jsonl") and len(run.data_sha256) == 64
    assert run.parameters["epochs"] == 2 and run.parameters["lr"] == 0.001 and run.parameters["batch_size"] == 4
    assert run.parameters["base_model"] == str(tiny_bert)
    assert run.output_dir.startswith(str(export_dir))


@pytest.mark.django_db
def test_a_file_outside_the_export_folder_or_a_bad_rate_is_refused(admin_client, export_dir, tiny_bert):
    response = admin_client.post(LAUNCH, {"data_file": "../../etc/passwd", "base_model": str(tiny_bert),
                                          "epochs": "1", "lr": "0", "batch_size": "4"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "data_file" in errors and "lr" in errors
    assert not TrainingRun.objects.filter(launched_by__isnull=False).exists()  # session fixtures record runs too


@pytest.mark.django_db
def test_with_no_export_file_the_launch_page_says_how_to_make_one_and_launch_is_refused(admin_client, settings,
                                                                                       tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    page = admin_client.get(LAUNCH).content.decode()
    assert "No export file yet" in page and "manage.py export_trees" in page and "Make an export now" in page
    response = admin_client.post(LAUNCH, {"data_file": "", "epochs": "1", "lr": "0.001", "batch_size": "4"})
    assert response.status_code == 200 and "No export file yet" in response.content.decode()
    assert not TrainingRun.objects.filter(launched_by__isnull=False).exists()  # session fixtures record runs too


@pytest.mark.django_db
def test_make_an_export_now_writes_an_export_file_the_launch_form_then_offers(admin_client, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    response = admin_client.post("/admin/training/trainingrun/export/", {"kind": "sft"})
    assert response.status_code == 302 and response["Location"].endswith(f"{LAUNCH}?kind=sft")
    made = [path.name for path in (tmp_path / "exports").glob("*.jsonl.gz")]
    assert len(made) == 1
    page = admin_client.get(LAUNCH + "?kind=sft").content.decode()
    assert made[0] in page and "No export file yet" not in page


@pytest.mark.django_db
def test_making_an_export_is_refused_without_the_launch_permission_and_on_get(client, admin_client, settings,
                                                                              tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    client.force_login(UserFactory(is_staff=True))
    assert client.post("/admin/training/trainingrun/export/").status_code == 403
    assert admin_client.get("/admin/training/trainingrun/export/").status_code == 405
    assert not (tmp_path / "exports").exists()


@pytest.mark.django_db
def test_manifest_files_are_not_offered_as_data_files(admin_client, export_dir):
    (export_dir / "oasst-trees-2026-11-25.jsonl.manifest.json").write_text("{}")
    for kind in ("reward_model", "ppo", "dpo", "sft"):
        choices = [value for value, _ in admin_client.get(f"{LAUNCH}?kind={kind}").context["form"]
                   .fields["data_file"].choices]
        assert choices == ["oasst-trees-2026-11-25.jsonl"], kind


@pytest.mark.django_db
def test_the_launch_page_shows_its_heading_once(admin_client, export_dir):
    page = admin_client.get(LAUNCH + "?kind=sft").content.decode()
    assert page.count("<h1>") == 1 and "<h1>Launch a SFT run</h1>" in page


@pytest.mark.django_db
def test_the_page_of_a_queued_or_running_run_reloads_itself_until_it_ends(admin_client, export_dir):
    run = services.training_run_queue(kind=TrainingRun.Kind.SFT, parameters={}, data_file="x.jsonl",
                                      data_sha256="0" * 64, output_root=str(export_dir))
    change = f"/admin/training/trainingrun/{run.pk}/change/"
    assert 'http-equiv="refresh"' in admin_client.get(change).content.decode()
    services.training_run_fail(run=run, error="stopped")
    assert 'http-equiv="refresh"' not in admin_client.get(change).content.decode()


def build_tree(state: str) -> dict:
    tree = MessageTree.objects.create(state=state, lang="en", goal_tree_size=12, max_depth=3, max_children_count=3)

    def message(parent, role, text, **extra):
        return Message.objects.create(tree=tree, parent=parent, role=role, text=text, lang="en",
                                      depth=0 if parent is None else parent.depth + 1, **extra)

    prompt = message(None, Role.PROMPTER, "the quick dog and the river")
    return {
        "tree": tree,
        "prompt": prompt,
        "better": message(prompt, Role.ASSISTANT, f"a warm stone {MARKER} near the house"),
        "worse": message(prompt, Role.ASSISTANT, "a warm stone near the house"),
        "deleted": message(prompt, Role.ASSISTANT, "gone", deleted=True),
    }


def score(**messages) -> dict:
    return {name: Message.objects.get(pk=message.pk).reward_score for name, message in messages.items()}


@pytest.mark.django_db
def test_score_messages_stores_a_score_on_each_live_reply_of_the_tree(job_run):
    run, _ = job_run
    chosen, other = build_tree(TreeState.READY_FOR_EXPORT), build_tree(TreeState.READY_FOR_EXPORT)
    stdout = StringIO()
    call_command("score_messages", reward_model=run.output_dir, tree=str(chosen["tree"].pk), stdout=stdout)
    scores = score(**{name: chosen[name] for name in ("prompt", "better", "worse", "deleted")})
    assert scores["prompt"] is None and scores["deleted"] is None
    assert scores["better"] > scores["worse"]
    assert score(better=other["better"]) == {"better": None}
    assert "scored 2 replies" in stdout.getvalue()


@pytest.mark.django_db
def test_score_messages_by_state_scores_only_trees_in_that_state(job_run):
    run, _ = job_run
    ready, growing = build_tree(TreeState.READY_FOR_EXPORT), build_tree(TreeState.GROWING)
    call_command("score_messages", reward_model=run.output_dir, state=TreeState.GROWING, stdout=StringIO())
    assert score(better=ready["better"]) == {"better": None}
    assert score(better=growing["better"])["better"] is not None


def test_score_messages_refuses_a_folder_without_a_reward_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(CommandError, match="no reward model"):
        call_command("score_messages", reward_model=str(tmp_path))


@pytest.mark.django_db
def test_score_messages_refuses_an_unknown_tree(job_run):
    run, _ = job_run
    with pytest.raises(CommandError, match="tree"):
        call_command("score_messages", reward_model=run.output_dir, tree="not-a-uuid")


@pytest.mark.django_db
def test_score_messages_scores_trees_in_chunks_across_trees_with_the_scores_of_one_tree_alone(job_run, monkeypatch):
    run, _ = job_run
    trees = [build_tree(TreeState.READY_FOR_EXPORT) for _ in range(3)]
    call_command("score_messages", reward_model=run.output_dir, tree=str(trees[0]["tree"].pk), stdout=StringIO())
    alone = score(better=trees[0]["better"], worse=trees[0]["worse"])
    monkeypatch.setattr("training.management.commands.score_messages.SCORING_CHUNK", 3)
    stdout = StringIO()
    call_command("score_messages", reward_model=run.output_dir, state=TreeState.READY_FOR_EXPORT, stdout=stdout)
    assert "scored 6 replies" in stdout.getvalue()
    assert all(score(better=tree["better"], worse=tree["worse"]) == pytest.approx(alone) for tree in trees)
