"""Scrape-time figures of the crowdsourcing tables for /metrics (oasst/metrics.py): tasks by type and
state, when the newest task was handed out, trees by state. Two GROUP BY queries per scrape."""

from collections.abc import Iterable

from django.db.models import Case, Count, Max, Value, When
from prometheus_client.core import GaugeMetricFamily, Metric

from tasks.models import MessageTree, Task, TaskType, TreeState

# The state of a task, first match wins: a finished task is done, skipped or expired; an open one is acked
# (the contributor started it) or pending.
TASK_STATES = ("done", "skipped", "expired", "acked", "pending")
TASK_STATE = Case(When(done=True, then=Value("done")), When(skipped=True, then=Value("skipped")),
                  When(expired=True, then=Value("expired")), When(acked_at__isnull=False, then=Value("acked")),
                  default=Value("pending"))


def task_metrics() -> Iterable[Metric]:
    """Tasks by type and state (every pair, zeros included, so an alert never meets a missing series), and
    the time the newest task was handed out: read from the table, it is the same whichever process or
    container is scraped and survives restarts, which a per-process counter would not."""
    rows = (Task.objects.annotate(state=TASK_STATE).values("type", "state").order_by()
            .annotate(count=Count("pk"), newest=Max("created_at")))
    counts = dict.fromkeys(((task_type, state) for task_type in TaskType.values for state in TASK_STATES), 0)
    newest = None
    for row in rows:
        counts[row["type"], row["state"]] = row["count"]
        newest = max(newest, row["newest"]) if newest else row["newest"]
    family = GaugeMetricFamily("oasst_tasks", "Tasks by type and state.", labels=["type", "state"])
    for (task_type, state), count in counts.items():
        family.add_metric([task_type, state], count)
    yield family
    if newest is not None:
        yield GaugeMetricFamily("oasst_task_last_handed_out_timestamp_seconds",
                                "When the newest task was handed out (Unix time).", value=newest.timestamp())


def tree_metrics() -> Iterable[Metric]:
    counts = dict.fromkeys(TreeState.values, 0)
    counts.update(MessageTree.objects.values_list("state").order_by().annotate(count=Count("pk")))
    family = GaugeMetricFamily("oasst_trees", "Message trees by state.", labels=["state"])
    for state, count in counts.items():
        family.add_metric([state], count)
    yield family
