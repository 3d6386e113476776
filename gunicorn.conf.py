"""gunicorn's settings file, read from the working directory (/app in the image).

With PROMETHEUS_MULTIPROC_DIR set, each worker counts its requests in files there (oasst/metrics.py); when
a worker exits, its live gauges' files are removed while its counters and histograms are kept and still summed.
The master empties the directory when it starts: files of an earlier run would be summed with this one's.
"""

import os
from pathlib import Path

from prometheus_client import multiprocess


def on_starting(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
