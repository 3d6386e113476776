"""The Celery app. Jobs live in each app's jobs.py (tasks/ already means crowdsourcing tasks)."""

import logging
import os

from celery import Celery

from oasst import embedded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")

app = Celery("oasst")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")

logger = logging.getLogger(__name__)


def enqueue_on_commit(job, *args, on_broker_down=None, long_running: bool = False) -> None:
    """Send job(*args) once the transaction commits. The writes are committed by then, so a broker
    outage must not fail the request: it is logged, on_broker_down() marks what was not sent, and a
    sweep sends it again once the broker answers (trees: ranking.scoring_retry; training runs:
    oasst.resend_unsent_training_runs). A long-running job, under the embedded default (Celery eager),
    goes to the embedded worker's thread when runserver started one, instead of running in the request."""
    from django.db import transaction

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


# Not named training.*: that queue is busy for hours with one run, and this sweep must not wait behind it.
@app.task(name="oasst.resend_unsent_training_runs")
def unsent_training_runs_resend_job() -> int:
    """Queued training runs whose job never reached the broker are sent again."""
    from training.services import training_runs_resend_unsent

    return training_runs_resend_unsent()
