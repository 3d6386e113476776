"""The only writers of training runs: start, report progress, finish or fail."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from training.models import TrainingRun

LOG_TAIL_CHARS = 4000


@transaction.atomic
def training_run_start(
    *, kind: str, parameters: dict, data_file: str, data_sha256: str, output_dir: str, launched_by=None
) -> TrainingRun:
    return TrainingRun.objects.create(
        kind=kind,
        status=TrainingRun.Status.RUNNING,
        parameters=parameters,
        data_file=data_file,
        data_sha256=data_sha256,
        output_dir=output_dir,
        launched_by=launched_by,
        started_at=timezone.now(),
    )


def training_run_progress(*, run: TrainingRun, progress: int, log_line: str = "") -> None:
    """Progress 0-100 and the last lines of the log; one UPDATE, only while the run is running."""
    update = {"progress": max(0, min(100, progress))}
    if log_line:
        update["log_tail"] = (run.log_tail + log_line + "\n")[-LOG_TAIL_CHARS:]
        run.log_tail = update["log_tail"]
    TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(**update)


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
def training_run_fail(*, run: TrainingRun, error: str) -> TrainingRun:
    run.status = TrainingRun.Status.FAILED
    run.error = error
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    return run
