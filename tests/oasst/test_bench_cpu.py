"""bench/task_loop.py's CPU accounting: CPU seconds per process group read from /proc, per completed loop."""

import importlib.util
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="module")
def task_loop():
    spec = importlib.util.spec_from_file_location("bench_task_loop_cpu", ROOT / "bench" / "task_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_clients_own_cpu_is_counted_as_the_client(task_loop):
    before = task_loop.cpu_seconds()
    assert set(before) == set(task_loop.CPU_GROUPS)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn 0.3 s of CPU in this process
        pass
    after = task_loop.cpu_seconds()
    assert after["client"] - before["client"] >= 0.2
    assert all(after[group] >= before[group] - 0.05 for group in task_loop.CPU_GROUPS)


def test_cpu_per_loop_divides_each_group_by_the_loops(task_loop):
    before = dict.fromkeys(task_loop.CPU_GROUPS, 1.0)
    after = {**before, "server": 3.0, "postgres": 2.0}
    per_loop = task_loop.cpu_per_loop(before, after, 100)
    assert per_loop["ms_per_loop"]["server"] == 20.0 and per_loop["ms_per_loop"]["postgres"] == 10.0
    assert per_loop["ms_per_loop"]["client"] == 0.0 and per_loop["seconds"]["server"] == 2.0
    assert task_loop.cpu_per_loop(before, after, 0) == {} and task_loop.cpu_per_loop({}, after, 5) == {}
