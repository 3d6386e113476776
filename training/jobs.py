"""Celery jobs of the training app: thin wrappers around its services. The runs go to the dedicated `training`
queue; the sweeps that watch them stay on `default` (settings.CELERY_TASK_ROUTES), never behind a busy run."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings

from oasst.celery import job
from training import challenge, services, serving
from training.dependencies import training_dependencies_problem
from training.models import TrainingRun
from training.outputs import code_version
from training.reward import RewardTrainingConfig, train_reward_model

logger = logging.getLogger(__name__)

# Per-step logs and per-reply scores stay in the run's metrics.json; the row keeps the summary.
BULKY_METRICS = ("steps", "eval_rewards", "evaluations", "eval_margins")


def run_queued(run_id: int, train: Callable[[TrainingRun, Callable[[int, str], None]], dict]) -> str:
    """Claim a queued run, train it, and end it succeeded with its metrics or failed with the error and traceback."""
    run = services.training_run_claim(run_id=run_id)
    if run is None:
        return "not queued"
    problem = training_dependencies_problem()
    if problem is not None:  # `make run` without `make train-deps`: the embedded worker has no torch
        services.training_run_fail(run=run, error=problem)
        return run.status
    recorded = {"percent": 0}

    def progress(percent: int, line: str) -> None:
        if percent >= recorded["percent"] + 5 or percent == 100:
            if not services.training_run_progress(run=run, progress=percent, log_line=line):
                raise services.RunStopped(f"run {run.pk} no longer runs")
            recorded["percent"] = percent

    try:
        metrics = train(run, progress)
    except services.RunStopped:  # cancelled while it ran: the row already says so
        return TrainingRun.objects.get(pk=run.pk).status
    except Exception as error:  # the run records any crash; the worker stays up for the next one
        logger.exception("training run %s failed", run.pk)
        message = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        services.training_run_fail(run=run, error=message, log=traceback.format_exc())
        return run.status
    if not services.training_run_running(run):  # cancelled during its last step
        return TrainingRun.objects.get(pk=run.pk).status
    services.training_run_succeed(
        run=run,
        metrics={key: value for key, value in metrics.items() if key not in BULKY_METRICS},
        code_version=code_version(),
    )
    return run.status


def _train_reward_model(run: TrainingRun, progress: Callable[[int, str], None]) -> dict:
    config = RewardTrainingConfig(data=run.data_file, output=run.output_dir, **run.parameters)
    return train_reward_model(
        config, progress=lambda step, total: progress(100 * step // max(total, 1), f"step {step}/{total}")
    )


def _train_ppo(run: TrainingRun, progress: Callable[[int, str], None]) -> dict:
    # heavy: the PPO modules need torch and transformers; the web process imports this module
    from training.ppo import PPOConfig, step_line, train_ppo

    config = PPOConfig(prompts=run.data_file, output=run.output_dir, **run.parameters)
    return train_ppo(
        config, on_step=lambda stats: progress(100 * stats["step"] // config.steps, step_line(stats, config.steps))
    )


def _train_dpo(run: TrainingRun, progress: Callable[[int, str], None]) -> dict:
    # heavy: the DPO modules need torch and transformers; the web process imports this module
    from training.dpo import DPOTrainingConfig, train_dpo

    config = DPOTrainingConfig(data=run.data_file, output=run.output_dir, **run.parameters)
    return train_dpo(
        config, progress=lambda step, total: progress(100 * step // max(total, 1), f"step {step}/{total}")
    )


def _train_sft(run: TrainingRun, progress: Callable[[int, str], None]) -> dict:
    # heavy: the SFT modules need torch and transformers; the web process imports this module
    from training.sft import SFTTrainingConfig, train_sft

    config = SFTTrainingConfig(data=run.data_file, output=run.output_dir, **run.parameters)
    return train_sft(
        config, progress=lambda step, total: progress(100 * step // max(total, 1), f"step {step}/{total}")
    )


@job("training.reward_model_train", former_name="training.train_reward_model")
def reward_model_train_job(run_id: int) -> str:
    return run_queued(run_id, _train_reward_model)


@job("training.ppo_train", former_name="training.train_ppo")
def ppo_train_job(run_id: int) -> str:
    return run_queued(run_id, _train_ppo)


@job("training.dpo_train", former_name="training.train_dpo")
def dpo_train_job(run_id: int) -> str:
    return run_queued(run_id, _train_dpo)


@job("training.sft_train", former_name="training.train_sft")
def sft_train_job(run_id: int) -> str:
    return run_queued(run_id, _train_sft)


def _challenge(run: TrainingRun, progress: Callable[[int, str], None]) -> dict:
    return challenge.challenge_run(run, progress, train=lambda challenger: run_queued(challenger.pk,
                                                                                      _train_reward_model))


@job(challenge.CHALLENGE_JOB)
def reward_model_challenge_job(run_id: int | None = None) -> str:
    """A challenge run: the queued one the admin launched, or (from beat, without an id) a new one."""
    if run_id is None:
        run = challenge.challenge_queue_scheduled()
        if run is None:
            return "a challenge is already queued or running"
        run_id = run.pk
    return run_queued(run_id, _challenge)


TRAINING_JOBS = {  # the jobs named in services.TRAINING_JOB_NAMES
    TrainingRun.Kind.REWARD_MODEL: reward_model_train_job,
    TrainingRun.Kind.PPO: ppo_train_job,
    TrainingRun.Kind.DPO: dpo_train_job,
    TrainingRun.Kind.SFT: sft_train_job,
    TrainingRun.Kind.CHALLENGE: reward_model_challenge_job,
}


@job("training.runs_fail_stale", former_name="training.fail_stale_runs")
def runs_fail_stale_job() -> int:
    """Running runs silent for too long are failed: their worker died."""
    return services.training_runs_fail_stale(silent_for=timedelta(minutes=settings.TRAINING_STALE_MINUTES))


@job("training.runs_resend_unsent", former_name="oasst.resend_unsent_training_runs")
def runs_resend_unsent_job() -> int:
    """Queued training runs whose job never reached the broker are sent again."""
    return services.training_runs_resend_unsent()


def scoring_possible(skipped: str) -> bool:
    """Whether this worker can load a reward model; if not, the skipped work is logged with the reason."""
    problem = training_dependencies_problem()
    if problem is not None:
        logger.warning("%s: %s", skipped, problem)
    return problem is None


@job(serving.SCORE_JOB)
def replies_score_job(message_ids: list[str]) -> int:
    """Accepted replies scored by the reward model in service (none in service: nothing)."""
    if not scoring_possible(f"replies {message_ids} not scored"):
        return 0
    return serving.replies_score(message_ids=message_ids)


@job(serving.RESCORE_JOB)
def replies_rescore_job(run_id: int) -> int:
    """Every live reply scored by a newly promoted run, in batches; sent again, it resumes where it stopped."""
    if not scoring_possible(f"replies not re-scored by run {run_id} (send it again from its page once installed)"):
        return 0
    return serving.replies_rescore(run_id=run_id)
