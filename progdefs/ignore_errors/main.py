"""ignore_errors: consumes and discards Errors, counting them in ``dagyo_ignored_errors``."""

from prometheus_client import REGISTRY, Counter

from executor import Job

NAME = "dagyo_ignored_errors"


def _counter() -> Counter:
    """The counter, registered once per process even if this module is imported again."""
    try:
        return Counter(NAME, "Errors discarded by ignore_errors", ["flow", "node", "failed_node"])
    except ValueError:  # imported again from another copy of this folder: already registered
        return REGISTRY._names_to_collectors[f"{NAME}_total"]  # type: ignore[attr-defined,no-any-return]


IGNORED = _counter()


def run(job: Job) -> None:
    """Count and discard every Error; log the total at the end."""
    total = 0
    for error in job.inputs["errors"]:
        IGNORED.labels(job.flow_id, job.node, error.node).inc()
        total += 1
    job.logger.info("ignored %d error(s)", total)
