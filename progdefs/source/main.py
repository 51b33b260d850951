"""source: for each count received, emits name-0 … name-{count-1}."""

from executor import Job
from executor.types import Text


def run(job: Job) -> None:
    """Emit ``count`` names for every count that arrives."""
    out = job.outputs["src"]
    for count in job.inputs["count"]:
        for i in range(count.value):
            out.send(Text(text=f"name-{i}"))
