"""slow: passes items on after delay_ms per item."""

from executor import Job


def run(job: Job) -> None:
    """Read the delay from the delay_ms const, then pass each item on after it."""
    delays = list(job.inputs["delay_ms"])
    delay_s = (delays[-1].value if delays else 0) / 1000
    out = job.outputs["items"]
    for item in job.inputs["items"]:
        job.sleep(delay_s)
        out.send(item)
