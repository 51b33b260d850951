"""docs/observability.md stays true: it names every metric the scheduler and the executors
serve, every log field, and every span attribute."""

from __future__ import annotations

import re

from prometheus_client.exposition import generate_latest

from executor.core.health import ExecutorMetrics
from executor.core.logs import CONTEXT_FIELDS
from executor.core.tracing import JOB_SPAN, PANIC_EVENT, SUBMIT_SPAN
from scheduler.service.metrics import SchedulerMetrics
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "observability.md").read_text()


def served(text: str) -> set[str]:
    """The metric families of a scrape, as their # TYPE lines name them."""
    return set(re.findall(r"^# TYPE (\w+) \w+$", text, re.MULTILINE))


def test_every_metric_served_is_documented() -> None:
    scheduler = SchedulerMetrics()
    scheduler.observe(flows_by_state=dict, jobs_running=lambda: 0, heartbeat_ages=dict)
    names = served(scheduler.render().decode()) | served(
        generate_latest(ExecutorMetrics().registry).decode()
    )
    # prometheus_client adds a `_created` gauge beside each counter and histogram.
    names = {n for n in names if not n.endswith("_created")}
    missing = sorted(n for n in names if f"`{n}`" not in DOC and f"`{n}_total`" not in DOC)
    assert missing == [], f"metrics missing from docs/observability.md: {missing}"
    assert len(names) > 15, names  # the scrapes had their families at all


def test_every_log_field_and_span_is_documented() -> None:
    for field in ("time", "level", "logger", "message", "traceback", *CONTEXT_FIELDS):
        assert f"`{field}`" in DOC, field
    for name in (SUBMIT_SPAN, JOB_SPAN, PANIC_EVENT):
        assert f"`{name}`" in DOC, name
