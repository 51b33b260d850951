"""ignore_errors: consumes and discards Errors, counting them."""

from prometheus_client import Counter

from executor import Job

IGNORED = Counter(
    "dagyo_ignored_errors", "Errors discarded by ignore_errors", ["flow", "node", "failed_node"]
)


def run(job: Job) -> None:
    """Count and discard every Error; log the total at the end."""
    total = 0
    for error in job.inputs["errors"]:
        IGNORED.labels(job.flow_id, job.node, error.node).inc()
        total += 1
    job.logger.info("ignored %d error(s)", total)
