"""make_bytes: for each size received, one Bytes item of that many deterministic bytes.

Stream style, each item sent as soon as it is made: one item at a time in memory.
"""

from executor import Job
from executor.types import Bytes

# The bytes repeat this block: 0, 1, …, 255, then 0, 1, … again.
_BLOCK = bytes(range(256)) * 4096


def run(job: Job) -> None:
    """For each size, ``size`` bytes: byte i is i % 256."""
    out = job.outputs["data"]
    for item in job.inputs["size"]:
        size = item.value
        out.send(Bytes(data=_BLOCK * (size // len(_BLOCK)) + _BLOCK[: size % len(_BLOCK)]))
