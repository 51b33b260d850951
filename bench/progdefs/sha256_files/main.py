"""sha256, reading each item as a file: the same digests as examples/large's sha256, with
an offloaded item hashed as it is read from the store (bench/large.py --read files)."""

import hashlib

from executor import Job
from executor.types import Text


def run(job: Job) -> None:
    """For each Bytes item, its SHA-256, hex."""
    for file in job.inputs["data"].files():
        with file:
            digest = hashlib.sha256()
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        job.outputs["digest"].send(Text(text=digest.hexdigest()))
