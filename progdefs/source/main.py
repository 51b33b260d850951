"""source: for each count received, emits name-0 … name-{count-1}."""

from executor import Job
from executor.types import Text


def run(job: Job) -> None:
    """Emit ``count`` names for every count that arrives."""
    out = job.outputs["src"]
    for count in job.inputs["count"]:
        out.send_all(Text(text=f"name-{i}") for i in range(count.value))
