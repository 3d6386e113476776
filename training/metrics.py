"""Scrape-time figures of the training tables for /metrics (oasst/metrics.py): one GROUP BY per scrape."""

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from training.models import TrainingRun


def training_run_metrics() -> Iterable[Metric]:
    counts = {(kind, status): 0 for kind in TrainingRun.Kind.values for status in TrainingRun.Status.values}
    for kind, status, count in TrainingRun.objects.values_list("kind", "status").order_by().annotate(Count("pk")):
        counts[kind, status] = count
    family = GaugeMetricFamily("oasst_training_runs", "Training runs by kind and status.", labels=["kind", "status"])
    for (kind, status), count in counts.items():
        family.add_metric([kind, status], count)
    yield family
