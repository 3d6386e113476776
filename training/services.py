"""The only writers of training runs: queue, claim or start, report progress, finish, fail or cancel."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from oasst.audit import check_permission, moderation_record
from oasst.celery import app
from oasst.enqueue import enqueue_on_commit
from oasst.errors import Conflict
from training.models import RewardModelEvaluation, TrainingRun, TrainingRunParent
from training.selectors import training_run_of_folder

LOG_TAIL_CHARS = 4000
# Each kind's job on the training queue, by name: training/jobs.py defines them (this module cannot import it, it
# imports this one) and TrainingConfig.ready imports it, so every process has them registered.
TRAINING_JOB_NAMES = {
    TrainingRun.Kind.REWARD_MODEL: "training.reward_model_train",
    TrainingRun.Kind.PPO: "training.ppo_train",
    TrainingRun.Kind.DPO: "training.dpo_train",
    TrainingRun.Kind.SFT: "training.sft_train",
    TrainingRun.Kind.CHALLENGE: "training.reward_model_challenge",
}
# A queued run's error while its job could not be sent; training.runs_resend_unsent sends it again.
JOB_NOT_SENT = "The job queue was unreachable at launch; the run is sent to it again once it answers."
# The parameters (config fields) that name a model folder a run starts from, and the role of the run that wrote it.
PARENT_FOLDERS = {
    "policy": TrainingRunParent.Role.POLICY,
    "reward_model": TrainingRunParent.Role.REWARD_MODEL,
    "base_model": TrainingRunParent.Role.BASE_MODEL,
}


def training_run_parents_record(*, run: TrainingRun) -> list[TrainingRunParent]:
    """Link a new run to the runs that wrote the folders its parameters start from; a folder no succeeded run
    wrote links nothing."""
    links = []
    for name, role in PARENT_FOLDERS.items():
        folder = run.parameters.get(name)
        parent = training_run_of_folder(folder) if folder else None
        if parent is not None:
            links.append(TrainingRunParent(run=run, parent=parent, role=role))
    return TrainingRunParent.objects.bulk_create(links)


@transaction.atomic
def training_run_start(
    *, kind: str, parameters: dict, data_file: str, data_sha256: str, output_dir: str, launched_by=None
) -> TrainingRun:
    """A running run, linked to the runs it started from."""
    run = TrainingRun.objects.create(
        kind=kind,
        status=TrainingRun.Status.RUNNING,
        parameters=parameters,
        data_file=data_file,
        data_sha256=data_sha256,
        output_dir=output_dir,
        launched_by=launched_by,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    training_run_parents_record(run=run)
    return run


@transaction.atomic
def training_run_queue(
    *, kind: str, parameters: dict, data_file: str, data_sha256: str, output_root: str, launched_by=None
) -> TrainingRun:
    """A queued run whose output folder is named after it, under output_root, linked to the runs it starts from."""
    run = TrainingRun.objects.create(
        kind=kind, parameters=parameters, data_file=data_file, data_sha256=data_sha256, output_dir="",
        launched_by=launched_by,
    )
    run.output_dir = str(Path(output_root) / f"{kind}-run-{run.pk}")
    run.save(update_fields=["output_dir"])
    training_run_parents_record(run=run)
    return run


def training_run_claim(*, run_id: int) -> TrainingRun | None:
    """Queued -> running in one conditional UPDATE; None when the run is gone or someone else claimed it."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now
    )
    return TrainingRun.objects.get(pk=run_id) if claimed else None


def training_run_progress(*, run: TrainingRun, progress: int, log_line: str = "") -> bool:
    """Progress 0-100 and the last lines of the log; one UPDATE, only while the run is running. False when it no
    longer runs (cancelled, or failed by the stale sweep): its job should stop."""
    update = {"progress": max(0, min(100, progress)), "heartbeat_at": timezone.now()}
    if log_line:
        update["log_tail"] = (run.log_tail + log_line + "\n")[-LOG_TAIL_CHARS:]
        run.log_tail = update["log_tail"]
    return bool(TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(**update))


class RunStopped(Exception):  # noqa: N818 - a signal to stop, not an error: the run was cancelled while it ran
    """Raised inside a run's job when the run no longer runs (cancelled, or failed by the stale sweep)."""


def training_run_running(run: TrainingRun) -> bool:
    return TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).exists()


def check_still_running(run: TrainingRun) -> None:
    if not training_run_running(run):
        raise RunStopped(f"run {run.pk} no longer runs")


ACTIVE = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)
CANCEL_PERMISSION = "training.launch_run"


@transaction.atomic
def training_run_cancel(*, run: TrainingRun, actor, reason: str = "") -> TrainingRun:
    """A queued or running run ends cancelled: a queued one is never claimed, a running one stops at its next
    progress report (its job checks). A challenge takes its challenger with it. Audited."""
    check_permission(actor, CANCEL_PERMISSION)
    now = timezone.now()
    error = f"cancelled by {actor.get_username()}" + (f": {reason}" if reason else "")
    if not TrainingRun.objects.filter(pk=run.pk, status__in=ACTIVE).update(
            status=TrainingRun.Status.CANCELLED, finished_at=now, error=error):
        status = TrainingRun.objects.filter(pk=run.pk).values_list("status", flat=True).first() or "gone"
        raise Conflict(gettext("Run %(id)s is %(status)s; only a queued or running run can be cancelled.")
                       % {"id": run.pk, "status": status}, code="not_cancellable")
    run.refresh_from_db()
    challenger = (run.metrics.get("challenge") or {}).get("challenger_run") if run.metrics else None
    if challenger:
        TrainingRun.objects.filter(pk=challenger, status__in=ACTIVE).update(
            status=TrainingRun.Status.CANCELLED, finished_at=now, error=f"{error} (with challenge run {run.pk})")
    moderation_record(actor=actor, action="training_run_cancel", target_type="training_run", target_id=run.pk,
                      reason=reason, before={"status": "active"}, after={"status": run.status})
    return run


@transaction.atomic
def training_run_succeed(*, run: TrainingRun, metrics: dict, code_version: str | None) -> TrainingRun:
    run.status = TrainingRun.Status.SUCCEEDED
    run.progress = 100
    run.metrics = metrics
    run.code_version = code_version or ""
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "progress", "metrics", "code_version", "finished_at"])
    return run


@transaction.atomic
def training_run_fail(*, run: TrainingRun, error: str, log: str = "") -> TrainingRun:
    run.status = TrainingRun.Status.FAILED
    run.error = error
    run.finished_at = timezone.now()
    if log:
        run.log_tail = (run.log_tail + log)[-LOG_TAIL_CHARS:]
    run.save(update_fields=["status", "error", "finished_at", "log_tail"])
    return run


def training_runs_fail_stale(*, silent_for: timedelta) -> int:
    """Running runs whose worker gave no sign of life for silent_for end failed (a dead worker never finishes)."""
    cutoff = timezone.now() - silent_for
    minutes = int(silent_for.total_seconds() // 60)
    return (
        TrainingRun.objects.alias(last_seen=Coalesce("heartbeat_at", "started_at", "created_at"))
        .filter(last_seen__lt=cutoff, status=TrainingRun.Status.RUNNING)
        .update(
            status=TrainingRun.Status.FAILED,
            finished_at=timezone.now(),
            error=f"no sign of life from the worker for over {minutes} minutes; the worker probably died",
        )
    )


@transaction.atomic
def training_run_launch(
    *, kind: str, data_file: str, data_sha256: str, parameters: dict, output_root: str, launched_by=None
) -> TrainingRun:
    """A queued run of any kind, handed to its job on the training queue once the row is committed."""
    job = app.tasks[TRAINING_JOB_NAMES[kind]]
    run = training_run_queue(
        kind=kind,
        parameters=parameters,
        data_file=data_file,
        data_sha256=data_sha256,
        output_root=output_root,
        launched_by=launched_by,
    )
    enqueue_on_commit(job, run.pk, long_running=True, on_broker_down=lambda: TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.QUEUED).update(error=JOB_NOT_SENT))
    return run


def training_runs_resend_unsent() -> int:
    """Send again the jobs of queued runs launched while the broker was down; returns how many were sent.
    A second message for a run is harmless: only one worker claims it (training_run_claim)."""
    sent = 0
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED, error=JOB_NOT_SENT).only("pk", "kind"):
        # the broker still down: this raises, and the next sweep retries
        app.tasks[TRAINING_JOB_NAMES[run.kind]].apply_async((run.pk,))
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED, error=JOB_NOT_SENT).update(error="")
        sent += 1
    return sent


@transaction.atomic
def training_run_add_evaluation(
    *, run: TrainingRun, data_file: str, data_sha256: str, evaluation: dict, report_file: str = ""
) -> RewardModelEvaluation:
    """Record that a reward-model run was scored on a data file (``training.evaluation`` figures)."""
    if run.kind != TrainingRun.Kind.REWARD_MODEL:
        raise ValidationError(f"run {run.pk} is a {run.get_kind_display()} run, not a reward model")
    if not evaluation.get("pairs") or evaluation.get("accuracy") is None:
        raise ValidationError(f"an evaluation on {data_file} without pairs cannot be recorded")
    low, high = evaluation["interval"]
    random_low, random_high = evaluation["random"]["interval"]
    return RewardModelEvaluation.objects.create(
        run=run,
        data_file=data_file,
        data_sha256=data_sha256,
        pairs=evaluation["pairs"],
        accuracy=evaluation["accuracy"],
        accuracy_low=low,
        accuracy_high=high,
        length_rule=evaluation["length_rule"]["accuracy"],
        random_low=random_low,
        random_high=random_high,
        summary=evaluation,
        report_file=report_file,
    )
