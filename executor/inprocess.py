"""The executor's job code for a runner in the caller's own process.

The embedded runner (``dagyo run``) runs every job of a flow in one process with the same
code as a cluster executor; only the transport differs. This module is its one door into
the executor's private runtime:

* :class:`StreamSettings` (with :class:`FrameForm`) says how frames are made and bounded,
  :class:`Flusher` is the one thread that flushes lingering frames, and
  :class:`MemoryTransport` carries them between the jobs;
* a :class:`JobRun` is one job; :func:`execute` runs it to its end with the
  :class:`Program` :func:`load_program` loads, and returns its failure report, if any;
  :func:`check_code` imports each progdef's code at catalogue load, to check it;
* an :class:`Inbox` with :class:`InputStream` ports, read through :func:`merge`, takes the
  frames of the flow's exports;
* :func:`tune_gc` tunes the collector of a process that streams items.
"""

from executor._runtime.flusher import Flusher
from executor._runtime.inbox import Inbox
from executor._runtime.job import JobRun, execute
from executor._runtime.program import Program, check_code, load_program
from executor._runtime.stream import StreamSettings, tune_gc
from executor._runtime.transport.memory import MemoryTransport
from executor.core.frames import FrameForm
from executor.inputs import InputStream, merge

__all__ = [
    "Flusher",
    "FrameForm",
    "Inbox",
    "InputStream",
    "JobRun",
    "MemoryTransport",
    "Program",
    "StreamSettings",
    "check_code",
    "execute",
    "load_program",
    "merge",
    "tune_gc",
]
