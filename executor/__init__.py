"""The dagyo executor runtime and the progdef SDK.

A progdef is written against this package only::

    from executor import Job

    def run(job: Job) -> None:
        for item in job.inputs["name"]:
            job.outputs["greeting"].send(Text(text="hello " + item.text))
"""

from executor.errors import DecodeError, Stopped
from executor.inputs import InputStream
from executor.sdk import Context, Job, OutputStream

__all__ = ["Context", "DecodeError", "InputStream", "Job", "OutputStream", "Stopped"]
