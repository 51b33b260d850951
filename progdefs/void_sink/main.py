"""void_sink: consumes and discards a stream of any type."""

from executor import Job


def run(job: Job) -> None:
    """Read every item (each still decodes as its typename) and keep none."""
    for _ in job.inputs["sink"]:
        pass
