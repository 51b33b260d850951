"""bench/report.py's table: the Celery contender's rows beside dagyo's, and only the
benchmarks whose scripts exist."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.conftest import ROOT


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MANY_FLOWS = {
    "flows": 1000,
    "succeeded": 1000,
    "seconds": 26.55,
    "flows_per_s": 37.7,
    "queues_left": 0,
    "scheduler_rss_mb": 69.2,
    "cpu_ms_per_flow": {"broker": 11.89, "scheduler": 8.8, "executors": 7.67, "total": 28.36},
    "cores_busy": 1.07,
    "celery_chains": 2100,
    "celery_seconds": 26.94,
    "celery_chains_per_s": 77.9,
    "celery_cpu_ms_per_chain": {"broker": 2.09, "client": 2.63, "worker": 4.93, "total": 9.65},
    "celery_ratio": 0.483,
    "cpu_ratio": 2.94,
    "load": [12.12, 12.03],
}
LATENCY = {
    "flows": 200,
    "first_export_ms": {"p50": 17.5, "p99": 51.8},
    "finished_ms": {"p50": 24.4, "p99": 92.7},
    "celery_sent_done_ms": {"p50": 13.5, "p99": 48.9},
    "celery_ratio": 1.3,
    "celery_p99_ratio": 1.06,
    "load": [10.7, 9.92],
}


def test_the_celery_contender_has_rows_of_its_own_with_the_ratios_and_the_load() -> None:
    report = _report()
    commands = {name: both[0] for name, both in report.BENCHES.items()}
    rows = report.table({"many_flows": MANY_FLOWS, "latency": LATENCY}, commands)
    chains = next(row for row in rows if "Celery chains" in row)
    assert "2100 in 26.94 s (77.9 chains/s): dagyo 0.483× Celery" in chains
    assert "CPU per chain 9.65 ms (broker 2.09, client 2.63, worker 4.93)" in chains
    assert "dagyo's per flow 2.94× it; load average 12.12 → 12.03" in chains
    sent = next(row for row in rows if "sent → done" in row)
    assert "p50 13.5 ms, p99 48.9 ms: dagyo's p50 1.3× Celery's, p99 1.06×" in sent


def test_a_run_without_celery_has_no_celery_row() -> None:
    report = _report()
    commands = {name: both[0] for name, both in report.BENCHES.items()}
    dagyo_only = {k: v for k, v in MANY_FLOWS.items() if not k.startswith("celery")}
    rows = report.table({"many_flows": dagyo_only}, commands)
    assert not [row for row in rows if "Celery" in row]


def test_only_the_benchmarks_whose_scripts_exist_are_run() -> None:
    report = _report()
    for name, (command, _quick) in report.OPTIONAL.items():
        assert (name in report.BENCHES) == (ROOT / command[0]).is_file(), name


def test_the_node_contender_has_a_row_naming_its_own_flow() -> None:
    report = _report()
    commands = {name: both[0] for name, both in report.BENCHES.items()}
    stream = {"items": 1000, "seconds": 1.0, "ratio": 1.1, "node_ratio": 0.55}
    for prefix, speed in (("", 1000), ("handwritten_", 900), ("node_", 550)):
        stream[f"{prefix}items_per_s"] = stream[f"{prefix}median_items_per_s"] = speed
    rows = report.table({"stream": stream}, commands)
    assert [row for row in rows if "Node.js, source -> upper -> count of 1,000 items" in row]
    assert [row for row in rows if "ratio 1.1, node_ratio 0.55" in row]
