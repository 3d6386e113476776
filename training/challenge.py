"""Champion / challenger retraining: a challenge run exports the ready trees, trains a challenger reward model on
them with the current defaults (a reward-model run of its own), scores the challenger and the model in service
(the champion) on the same held-out trees (the challenger's) and puts the challenger in service only when it
beats the champion by the margin (settings.CHALLENGER_MARGIN) and passes the promotion rules; otherwise the
rejection is recorded with both figures. Every step is a recorded run, cancellable in the admin."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext

from oasst.audit import check_permission
from oasst.errors import Conflict, ServiceError
from tasks.export import nightly_export
from training import services, serving
from training.data import file_sha256
from training.evaluation import evaluate_preference_pairs
from training.models import TrainingRun, TrainingRunParent
from training.pairs import training_split
from training.reward import RewardTrainingConfig, default_base_model, load_reward_model, score_pairs

CHALLENGE_JOB = "training.reward_model_challenge"  # training/jobs.py defines it (it imports this module)
MODELS_FOLDER = "reward_models"  # under EXPORT_DIR, beside the runs launched from the admin
PATHS = ("data", "output")
# A tolerance on the margin: 0.70 against 0.68 with a margin of 0.02 is better by the margin.
MARGIN_TOLERANCE = 1e-9


def challenge_decision(*, challenger: float, length_rule: float, champion: float | None,
                       margin: float) -> tuple[bool, str]:
    """Whether the challenger goes in service, and why, from the accuracies on the same held-out pairs."""
    if challenger <= length_rule:
        return False, (f"rejected: the challenger ({challenger:.3f}) does not beat the length rule "
                       f"({length_rule:.3f})")
    if champion is None:
        return True, f"promoted: no model in service, and the challenger ({challenger:.3f}) beats the length rule"
    if challenger - champion < margin - MARGIN_TOLERANCE:
        return False, (f"rejected: the challenger ({challenger:.3f}) does not beat the champion ({champion:.3f}) "
                       f"by the margin {margin:g}")
    return True, (f"promoted: the challenger ({challenger:.3f}) beats the champion ({champion:.3f}) "
                  f"by {margin:g} or more")


def check_no_challenge_active() -> None:
    active = TrainingRun.objects.filter(kind=TrainingRun.Kind.CHALLENGE, status__in=services.ACTIVE).first()
    if active is not None:
        raise Conflict(gettext("Challenge run %(id)s is %(status)s: one challenge at a time.")
                       % {"id": active.pk, "status": active.status}, code="challenge_active")


def challenge_launch(*, actor) -> TrainingRun:
    """"Run a challenge now" in the admin, for a moderator who may put models in service: a queued challenge
    handed to its job on the training queue."""
    check_permission(actor, serving.PROMOTE_PERMISSION)
    check_no_challenge_active()
    return services.training_run_launch(kind=TrainingRun.Kind.CHALLENGE, data_file="", data_sha256="",
                                        parameters={"margin": settings.CHALLENGER_MARGIN},
                                        output_root=str(Path(settings.EXPORT_DIR) / MODELS_FOLDER), launched_by=actor)


def challenge_queue_scheduled() -> TrainingRun | None:
    """The weekly challenge's run (beat sends the job without a run); None while another challenge is active."""
    try:
        check_no_challenge_active()
    except Conflict:
        return None
    return services.training_run_queue(kind=TrainingRun.Kind.CHALLENGE, data_file="", data_sha256="",
                                       parameters={"margin": settings.CHALLENGER_MARGIN},
                                       output_root=str(Path(settings.EXPORT_DIR) / MODELS_FOLDER))


def challenger_parameters() -> dict:
    """The current defaults of a reward-model run (the MiniLM backbone), as a run's parameters."""
    config = RewardTrainingConfig(data="", output="", base_model=default_base_model())
    return {key: value for key, value in asdict(config).items() if key not in PATHS}


def challenge_record(run: TrainingRun, **figures) -> dict:
    """Add figures to the challenge's metrics as it goes, so its page (and a cancel) sees them before it ends."""
    run.metrics = {**(run.metrics or {}), "challenge": {**(run.metrics or {}).get("challenge", {}), **figures}}
    TrainingRun.objects.filter(pk=run.pk).update(metrics=run.metrics)
    return run.metrics


def held_out_evaluations(challenger: TrainingRun, champion: TrainingRun | None) -> tuple[dict, dict | None]:
    """Both models' evaluations on the challenger's held-out pairs (the same split its training made)."""
    config = RewardTrainingConfig(data=challenger.data_file, output=challenger.output_dir, **challenger.parameters)
    pairs = training_split((config.data, *config.extra_data), eval_sources=config.eval_data,
                           eval_fraction=config.eval_fraction, seed=config.seed).eval_pairs
    if not pairs:
        raise ValueError(f"the challenger run {challenger.pk} holds out no pairs: nothing to compare on")

    def evaluation(run: TrainingRun) -> dict:
        model, tokenizer, reading = load_reward_model(run.output_dir)
        chosen, rejected = score_pairs(model, tokenizer, pairs, reading=reading)
        result = evaluate_preference_pairs(pairs, chosen, rejected)
        services.training_run_add_evaluation(run=run, data_file=challenger.data_file,
                                             data_sha256=challenger.data_sha256, evaluation=result)
        return result

    return evaluation(challenger), evaluation(champion) if champion is not None else None


def challenge_run(run: TrainingRun, progress: Callable[[int, str], None],
                  train: Callable[[TrainingRun], str]) -> dict:
    """The steps of a claimed challenge run; ``train`` trains the queued challenger run (jobs.run_queued) and
    returns its status. Raises ValueError (the run fails with it) when a step cannot go on; stops when the
    challenge is cancelled (services.RunStopped)."""
    margin = float(run.parameters.get("margin", settings.CHALLENGER_MARGIN))
    champion = serving.serving_run()
    if champion is not None:
        TrainingRunParent.objects.get_or_create(run=run, role=TrainingRunParent.Role.REWARD_MODEL,
                                                defaults={"parent": champion})
    challenge_record(run, margin=margin, champion_run=champion.pk if champion else None)
    progress(5, "exporting the ready trees")
    export = nightly_export(folder=settings.EXPORT_DIR, keep=settings.EXPORT_KEEP)
    challenge_record(run, export_file=export.path, export_trees=export.trees)
    if not export.trees:
        raise ValueError("No conversation tree is ready for export: no challenger was trained, nothing promoted.")
    TrainingRun.objects.filter(pk=run.pk).update(data_file=export.path, data_sha256=export.sha256)
    services.check_still_running(run)
    challenger = services.training_run_queue(
        kind=TrainingRun.Kind.REWARD_MODEL, parameters=challenger_parameters(), data_file=export.path,
        data_sha256=export.sha256 or file_sha256(export.path),
        output_root=str(Path(settings.EXPORT_DIR) / MODELS_FOLDER), launched_by=run.launched_by,
    )
    challenge_record(run, challenger_run=challenger.pk)
    progress(10, f"training the challenger, run {challenger.pk}")
    status = train(challenger)
    services.check_still_running(run)
    if status != TrainingRun.Status.SUCCEEDED:
        challenger.refresh_from_db()
        raise ValueError(f"The challenger run {challenger.pk} ended {status}: {challenger.error or '-'}; "
                         "nothing promoted.")
    challenger.refresh_from_db()
    progress(80, "scoring the champion and the challenger on the challenger's held-out trees")
    ours, theirs = held_out_evaluations(challenger, champion)
    figures = {"challenger_accuracy": ours["accuracy"], "length_rule": ours["length_rule"]["accuracy"],
               "champion_accuracy": theirs["accuracy"] if theirs else None, "pairs": ours["pairs"]}
    challenge_record(run, **figures)
    services.check_still_running(run)
    promote, reason = challenge_decision(challenger=figures["challenger_accuracy"], length_rule=figures["length_rule"],
                                         champion=figures["champion_accuracy"], margin=margin)
    if promote:
        try:
            serving.reward_model_put_in_service(run=challenger, actor=None, reason=f"challenge run {run.pk}: {reason}")
        except ServiceError as error:  # the promotion rules refused it (the same checks a moderator meets)
            promote, reason = False, f"rejected by the promotion rules: {' '.join(error.messages)}"
    return challenge_record(run, decision="promoted" if promote else "rejected", reason=reason)
