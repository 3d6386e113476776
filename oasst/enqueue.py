"""Sending jobs once the transaction commits: to the broker, or to the embedded worker's job thread."""

import logging

from django.db import transaction

from oasst import embedded

logger = logging.getLogger(__name__)


def enqueue_on_commit(job, *args, on_broker_down=None, long_running: bool = False) -> None:
    """Send job(*args) once the transaction commits. The writes are committed by then, so a broker
    outage must not fail the request: it is logged, on_broker_down() marks what was not sent, and a
    sweep sends it again once the broker answers (trees: ranking.scoring_retry; training runs:
    training.runs_resend_unsent). A long-running job, under the embedded default (Celery eager),
    goes to the embedded worker's thread when runserver started one, instead of running in the request."""

    def send() -> None:
        if long_running and embedded.run_in_background(job, *args):
            return
        try:
            job.delay(*args)
        except Exception:  # the broker, or the result store (Celery subscribes to the result first)
            logger.exception("job %s%r not sent: a sweep sends it later", job.name, args)
            if on_broker_down is not None:
                on_broker_down()

    transaction.on_commit(send)
