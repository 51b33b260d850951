"""count: the number of items of a stream, sent once at end-of-stream."""

from executor import Job
from executor.types import Int64


def run(job: Job) -> None:
    """Count the items, then send the total."""
    total = 0
    for _ in job.inputs["items"]:
        total += 1
    job.outputs["total"].send(Int64(value=total))
