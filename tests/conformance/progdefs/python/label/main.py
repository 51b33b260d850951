"""label: the field 'label' of each item of any type, as a Text, in order."""

from executor import Job
from executor.types import Text


def run(job: Job) -> None:
    """Read each item with the job's own types and send its label."""
    for item in job.inputs["value"]:
        job.outputs["label"].send(Text(text=item.label))
