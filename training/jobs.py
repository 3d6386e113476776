"""Celery jobs of the training app, on the dedicated `training` queue: thin wrappers around its services."""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from training import services
from training.reward import RewardTrainingConfig, code_version, train_reward_model

logger = logging.getLogger(__name__)

STEPS_AND_SCORES = ("steps", "eval_rewards")


@shared_task(name="training.train_reward_model")
def train_reward_model_job(run_id: int) -> str:
    """Train a queued reward-model run; it ends succeeded with its metrics, or failed with the error and traceback."""
    run = services.training_run_claim(run_id=run_id)
    if run is None:
        return "not queued"
    config = RewardTrainingConfig(data=run.data_file, output=run.output_dir, **run.parameters)
    recorded = {"percent": 0}

    def progress(step: int, total: int) -> None:
        percent = 100 * step // max(total, 1)
        if percent >= recorded["percent"] + 5:
            services.training_run_progress(run=run, progress=percent, log_line=f"step {step}/{total}")
            recorded["percent"] = percent

    try:
        metrics = train_reward_model(config, progress=progress)
    except Exception as error:  # the run records any crash; the worker stays up for the next one
        logger.exception("training run %s failed", run.pk)
        message = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        services.training_run_fail(run=run, error=message, log=traceback.format_exc())
        return run.status
    services.training_run_succeed(
        run=run,
        metrics={key: value for key, value in metrics.items() if key not in STEPS_AND_SCORES},
        code_version=code_version(),
    )
    return run.status


@shared_task(name="training.fail_stale_runs")
def stale_runs_fail_job() -> int:
    return services.training_runs_fail_stale(silent_for=timedelta(minutes=settings.TRAINING_STALE_MINUTES))
