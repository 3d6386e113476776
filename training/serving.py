"""The reward model in service: a succeeded reward-model run put in service by a moderator with the permission
(checked against the length rule on its own held-out pairs, one run at a time, recorded in the audit log), taken
out of service, and the accepted assistant replies scored with it in batches (on acceptance, and all of them again
when a run is promoted: resumable, since a reply already scored by the run is skipped)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from oasst.audit import check_permission, moderation_record
from oasst.celery import app
from oasst.enqueue import enqueue_on_commit
from oasst.errors import Conflict, ServiceError
from tasks.models import Message, Role
from tasks.services import message_reward_scores_set, serving_scorer_set
from training.data import Turn
from training.models import TrainingRun
from training.reward import load_reward_model, score_replies

PROMOTE_PERMISSION = "training.promote_trainingrun"
SCORING_BATCH = 256  # replies scored and stored together; a crash loses at most one batch's work
SCORE_JOB = "training.replies_score"  # training/jobs.py defines the jobs (it imports this module)
RESCORE_JOB = "training.replies_rescore"


def serving_run() -> TrainingRun | None:
    return TrainingRun.objects.filter(in_service=True).first()


def live_replies() -> QuerySet[Message]:
    """The replies a reward model in service scores: accepted, not deleted, assistant replies."""
    return Message.objects.filter(role=Role.ASSISTANT, deleted=False, review_result=True, parent__isnull=False)


def rescore_progress(run: TrainingRun) -> tuple[int, int]:
    """(live replies scored by this run, live replies)."""
    replies = live_replies()
    return replies.filter(reward_run_id=run.pk).count(), replies.count()


def held_out_result(run: TrainingRun) -> tuple[float, float]:
    """(accuracy, length-rule accuracy) on the run's own held-out pairs, from the metrics.json of its folder."""
    folder = Path(run.output_dir)
    if not run.output_dir or not (folder / "reward_model.json").is_file():
        raise ServiceError(gettext("The model folder of run %(id)s is missing: %(folder)s.")
                           % {"id": run.pk, "folder": run.output_dir or "(none)"}, code="folder_missing")
    try:
        evaluation = json.loads((folder / "metrics.json").read_text())["eval"]
        return float(evaluation["accuracy"]), float(evaluation["length_rule"]["accuracy"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ServiceError(gettext("Run %(id)s has no held-out evaluation in %(file)s (accuracy and length rule): "
                                   "%(error)s") % {"id": run.pk, "file": folder / "metrics.json", "error": error},
                           code="no_evaluation") from error


def check_promotable(run: TrainingRun) -> tuple[float, float]:
    """A succeeded reward-model run whose folder is there and whose held-out accuracy beats the length rule."""
    if run.kind != TrainingRun.Kind.REWARD_MODEL:
        raise ServiceError(gettext("Run %(id)s is a %(kind)s run; only a reward model can be put in service.")
                           % {"id": run.pk, "kind": run.get_kind_display()}, code="not_reward_model")
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise ServiceError(gettext("Run %(id)s is %(status)s; only a succeeded run can be put in service.")
                           % {"id": run.pk, "status": run.status}, code="not_succeeded")
    accuracy, length_rule = held_out_result(run)
    if accuracy <= length_rule:
        raise ServiceError(gettext("Run %(id)s does not beat the length rule on its held-out pairs: accuracy "
                                   "%(accuracy).3f, length rule %(rule).3f.")
                           % {"id": run.pk, "accuracy": accuracy, "rule": length_rule}, code="below_length_rule")
    return accuracy, length_rule


def runs_locked(run: TrainingRun) -> tuple[TrainingRun, TrainingRun | None]:
    """The run and the run in service, locked in pk order; the run as it is now."""
    rows = {row.pk: row for row in TrainingRun.objects.select_for_update().filter(
        Q(pk=run.pk) | Q(in_service=True)).order_by("pk")}
    if run.pk not in rows:
        raise ServiceError(gettext("Run %(id)s no longer exists.") % {"id": run.pk}, code="run_missing")
    current = next((row for row in rows.values() if row.in_service), None)
    return rows[run.pk], current


@transaction.atomic
def reward_model_promote(*, run: TrainingRun, actor, reason: str = "") -> TrainingRun:
    """Put the run in service in place of the one there (if any), and re-score the live replies with it."""
    check_permission(actor, PROMOTE_PERMISSION)
    return reward_model_put_in_service(run=run, actor=actor, reason=reason)


@transaction.atomic
def reward_model_put_in_service(*, run: TrainingRun, actor, reason: str = "") -> TrainingRun:
    """The promotion itself, under the same checks, for a moderator (reward_model_promote) or for a challenge
    that its challenger won (actor None: the audit entry names no person)."""
    run, current = runs_locked(run)
    if run.in_service:
        raise Conflict(gettext("Run %(id)s is already in service.") % {"id": run.pk}, code="already_in_service")
    accuracy, length_rule = check_promotable(run)
    if current is not None:
        TrainingRun.objects.filter(pk=current.pk).update(in_service=False, in_service_since=None)
    run.in_service, run.in_service_since = True, timezone.now()
    run.save(update_fields=["in_service", "in_service_since"])
    serving_scorer_set(run_id=run.pk)  # tasks' ranking queue weighs only this run's scores from now on
    moderation_record(actor=actor, action="reward_model_promote", target_type="training_run", target_id=run.pk,
                      reason=reason, before={"in_service": current.pk if current else None},
                      after={"in_service": run.pk, "accuracy": accuracy, "length_rule": length_rule})
    enqueue_on_commit(app.tasks[RESCORE_JOB], run.pk, long_running=True)
    return run


def run_in_service_locked(run: TrainingRun, actor) -> TrainingRun:
    """The run, locked, for an actor with the permission; refused unless it is in service."""
    check_permission(actor, PROMOTE_PERMISSION)
    run, _ = runs_locked(run)
    if not run.in_service:
        raise Conflict(gettext("Run %(id)s is not in service.") % {"id": run.pk}, code="not_in_service")
    return run


@transaction.atomic
def reward_model_retire(*, run: TrainingRun, actor, reason: str = "") -> TrainingRun:
    """Take the run out of service: no model scores new replies until another is promoted."""
    run = run_in_service_locked(run, actor)
    run.in_service, run.in_service_since = False, None
    run.save(update_fields=["in_service", "in_service_since"])
    serving_scorer_set(run_id=None)
    moderation_record(actor=actor, action="reward_model_retire", target_type="training_run", target_id=run.pk,
                      reason=reason, before={"in_service": run.pk}, after={"in_service": None})
    return run


@transaction.atomic
def reward_model_rescore(*, run: TrainingRun, actor, reason: str = "") -> TrainingRun:
    """Send the re-scoring job of the run in service again (after a worker died mid-way: it resumes)."""
    run = run_in_service_locked(run, actor)
    done, total = rescore_progress(run)
    moderation_record(actor=actor, action="reward_model_rescore", target_type="training_run", target_id=run.pk,
                      reason=reason, before={"scored": done, "live_replies": total})
    enqueue_on_commit(app.tasks[RESCORE_JOB], run.pk, long_running=True)
    return run


def reply_accepted_score(sender=None, *, message_id, **kwargs) -> None:
    """Receiver of tasks.signals.reply_accepted (connected in training.apps): with a model in service, the reply
    is scored by a job once the acceptance commits; without one, nothing is sent."""
    if TrainingRun.objects.filter(in_service=True).exists():
        enqueue_on_commit(app.tasks[SCORE_JOB], [str(message_id)], long_running=True)


def replies_with_conversations(messages: list[Message]) -> list[tuple[Message, tuple[Turn, ...]]]:
    """Each live assistant reply with the conversation above it, root first, as at training time."""
    by_id = {message.pk: message for message in messages}
    items = []
    for message in messages:
        if message.role != Role.ASSISTANT or message.deleted or message.parent_id not in by_id:
            continue
        turns, parent = [], by_id.get(message.parent_id)
        while parent is not None:
            turns.append(Turn(parent.role, parent.text))
            parent = by_id.get(parent.parent_id)
        items.append((message, tuple(reversed(turns))))
    return items


def replies_score_batch(run: TrainingRun, scorer, reply_ids: Iterable) -> int:
    """Score the given replies (with the conversations above them) and store the scores with the run's id."""
    wanted = set(reply_ids)
    trees = Message.objects.filter(pk__in=wanted).values_list("tree_id", flat=True)
    messages = list(Message.objects.filter(tree_id__in=trees).only("pk", "parent_id", "role", "text", "deleted"))
    items = [(message, turns) for message, turns in replies_with_conversations(messages) if message.pk in wanted]
    model, tokenizer, reading = scorer
    scores = score_replies(model, tokenizer, [(turns, message.text) for message, turns in items], reading=reading)
    return message_reward_scores_set(
        scores={message.pk: score for (message, _), score in zip(items, scores, strict=True)}, run_id=run.pk
    )


def replies_score(*, message_ids: list) -> int:
    """Score these replies with the model in service, those it has not scored yet; returns how many were stored."""
    run = serving_run()
    if run is None:
        return 0
    ids = list(live_replies().filter(pk__in=message_ids).exclude(reward_run_id=run.pk).values_list("pk", flat=True))
    if not ids:
        return 0
    scorer = load_reward_model(run.output_dir)
    return sum(replies_score_batch(run, scorer, ids[start:start + SCORING_BATCH])
               for start in range(0, len(ids), SCORING_BATCH))


def replies_rescore(*, run_id: int) -> int:
    """Score every live reply the run has not scored yet, batch by batch, while it stays in service: idempotent,
    and a crash mid-way loses one batch at most (sending the job again resumes); returns how many were stored."""
    run = TrainingRun.objects.filter(pk=run_id, in_service=True).first()
    if run is None:
        return 0
    scorer, stored = load_reward_model(run.output_dir), 0
    while TrainingRun.objects.filter(pk=run.pk, in_service=True).exists():
        batch = list(live_replies().exclude(reward_run_id=run.pk).order_by("pk")
                     .values_list("pk", flat=True)[:SCORING_BATCH])
        if not batch:
            break
        done = replies_score_batch(run, scorer, batch)
        if not done:  # replies that cannot be scored (no conversation above them) would come back forever
            break
        stored += done
    return stored
