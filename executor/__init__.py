"""The dagyo executor: the progdef SDK, the wire core both programs share, the runtime.

A progdef is written against this package only::

    from executor import Job

    def run(job: Job) -> None:
        for item in job.inputs["name"]:
            job.outputs["greeting"].send(Text(text="hello " + item.text))

The SDK's names are loaded on first use, so that importing the wire core
(``executor.core``), as the scheduler does, loads no SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor.core.errors import DecodeError, Stopped
    from executor.inputs import InputStream
    from executor.sdk import Context, Job, OutputStream

_HOMES = {
    "Context": "executor.sdk",
    "DecodeError": "executor.core.errors",
    "InputStream": "executor.inputs",
    "Job": "executor.sdk",
    "OutputStream": "executor.sdk",
    "Stopped": "executor.core.errors",
}

__all__ = ["Context", "DecodeError", "InputStream", "Job", "OutputStream", "Stopped"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'executor' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
