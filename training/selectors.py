"""Reads of training runs that other modules share."""

from __future__ import annotations

from pathlib import Path

from training.models import TrainingRun


def training_run_of_folder(folder: str) -> TrainingRun | None:
    """The newest succeeded run whose output folder is ``folder`` (as given or resolved); None for a folder no
    run wrote (a hand-made model, the prepared SmolLM2)."""
    return (
        TrainingRun.objects.filter(
            output_dir__in={folder, str(Path(folder).resolve())}, status=TrainingRun.Status.SUCCEEDED
        )
        .order_by("-finished_at", "-pk")
        .first()
    )


def user_data_sections(sender=None, *, user, **kwargs) -> dict:
    """The training app's part of "download my data" (receiver of oasst.signals.user_data_requested,
    connected in training.apps): the runs the user launched."""
    return {"training_runs": list(TrainingRun.objects.filter(launched_by=user).order_by("created_at", "pk").values(
        "id", "kind", "status", "data_file", "created_at", "finished_at"))}
