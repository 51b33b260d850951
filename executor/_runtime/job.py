"""Running one job: the same code for the embedded runner and the cluster executor."""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback as traceback_module
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from executor._runtime.aio import Bridge, event_loop, run_coroutine_job
from executor._runtime.flusher import Flusher
from executor._runtime.handler import run_handler
from executor._runtime.inbox import Inbox, StopSignal
from executor._runtime.jobtypes import JobTypes
from executor._runtime.pipeline import run_pipelined
from executor._runtime.program import Program, read_secrets
from executor._runtime.stream import FrameWriter, StreamSettings
from executor._runtime.transport.base import Transport
from executor.core import offload
from executor.core.errors import DagyoError, Stopped
from executor.core.offload import Offloader
from executor.core.types import message_class
from executor.errorport import author_traceback
from executor.inputs import InputStream, check_left
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_BROKER,
    FAILURE_KIND_PANIC,
    FailureKind,
    FailureReport,
)
from executor.pb.dagyo.v1.job_pb2 import Job as JobDescriptor
from executor.sdk import Job, OutputStream

# The executor package: frames of its code are the runtime's, not the author's.
_EXECUTOR_DIR = str(Path(__file__).parents[1])


class StopCause(StrEnum):
    """Who stopped a job when its flow's Stop did not: its failure, of this kind."""

    EXECUTOR = "executor"  # a drain past its grace period, a second SIGTERM
    BROKER = "broker"  # the broker failed it: connection lost, a call unanswered, a stream gone

    @property
    def failure_kind(self) -> FailureKind:
        """The kind of the job's failure report."""
        return FAILURE_KIND_BROKER if self is StopCause.BROKER else FAILURE_KIND_PANIC


@dataclass
class JobRun:
    """One job being run: its descriptor, its stop signal, and what it has done so far."""

    descriptor: JobDescriptor
    stop: threading.Event = field(default_factory=StopSignal)
    inputs: dict[str, InputStream] = field(default_factory=dict)
    outputs: dict[str, OutputStream] = field(default_factory=dict)
    # The runtime's side of each output port: the writer its OutputStream sends through.
    writers: dict[str, FrameWriter] = field(default_factory=dict)
    inbox: Inbox | None = None
    # Why the job was stopped when it was not its flow's Stop (a drain past its grace, the
    # broker lost, a stream gone): the job's failure, reported as such.
    stop_reason: str = ""
    # Who stopped it so; None while stop_reason is empty.
    stop_cause: StopCause | None = None
    # Set when its flow's Stop stopped it: the Stop's reason (or "no reason given").
    flow_stopped: str = ""
    # When the executor took it (monotonic seconds): its duration.
    taken: float = field(default_factory=time.monotonic)
    # Its trace span while it runs (executor.core.tracing); None when tracing is off.
    span: Any = None
    # Its items already counted in the executor's metrics: (side, port) -> items.
    counted: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """(flow id, node): a job's identity."""
        return (self.descriptor.flow_id, self.descriptor.node)

    def items_sent(self) -> dict[str, int]:
        """Items sent so far per output port."""
        # list(): a copy made at once, as the job thread may be adding ports meanwhile.
        return {port: out.items_sent for port, out in list(self.outputs.items())}

    def items_received(self) -> dict[str, int]:
        """Items received so far per input port (consts included)."""
        return {port: stream.items_received for port, stream in list(self.inputs.items())}

    def blocked_s(self) -> float:
        """Seconds the job has been waiting, now, for a full output stream (0: it is not)."""
        now = time.monotonic()
        return max((writer.blocked_s(now) for writer in self.writers.values()), default=0.0)

    def frames_sent(self) -> dict[str, int]:
        """Frames sent so far per output port."""
        return {port: writer.frames_sent for port, writer in self.writers.items()}

    def request_stop(self, reason: str = "", *, cause: StopCause = StopCause.EXECUTOR) -> None:
        """Tell the job to stop now; it raises Stopped where it waits or checks.

        Args:
            reason: set when the stop is the executor's doing and must be reported as the
                job's failure (e.g. a drain past its grace period); empty for its flow's
                Stop (see :meth:`stop_for_flow`) or another job's failure (embedded).
            cause: who stopped the job, for ``reason`` (BROKER when the broker failed it).
        """
        if reason and not self.stop.is_set():
            self.stop_reason, self.stop_cause = reason, cause
        self.stop.set()
        if self.inbox is not None:
            self.inbox.wake()

    def stop_for_flow(self, reason: str) -> None:
        """Stop the job because a Stop for its flow came (``reason``: the Stop's)."""
        if not self.stop.is_set():
            self.flow_stopped = reason or "no reason given"
        self.request_stop()
        if self.inbox is not None:
            self.inbox.wake()


def run_job(
    run: JobRun,
    program: Program,
    transport: Transport,
    *,
    flusher: Flusher,
    settings: StreamSettings,
) -> None:
    """Run a job to its end: its outputs closed and its inputs read to end-of-stream.

    Raises:
        Stopped: when the job was told to stop.
        Exception: anything the progdef's code raised (a panic); the caller reports it.
    """
    descriptor = run.descriptor
    inbox = run.inbox = Inbox(run.stop)
    store = settings.offload.store
    fetch = functools.partial(offload.fetch, store, flow_id=descriptor.flow_id)
    logger = logging.getLogger(f"dagyo.job.{descriptor.progdef}")
    # An async def run(job) reads and sends through its job's thread (see aio.Bridge).
    bridge = (
        Bridge(event_loop(), inbox.wake)
        if program.is_async and program.style != "function"
        else None
    )
    blocking = bridge.call if bridge is not None else None
    with closing(transport.open(stop=run.stop)) as streams:
        classes: Callable[[str], type[Message]] = message_class
        if descriptor.types.file:  # a type variable bound to another progdef's type
            source = f"job {descriptor.flow_id}/{descriptor.node}"
            classes = JobTypes(descriptor.types.SerializeToString(), source=source).message_class
        for port, spec in descriptor.inputs.items():
            cls = classes(spec.typename)
            if spec.WhichOneof("source") == "consts":
                run.inputs[port] = InputStream(
                    port=port,
                    edge=f"const -> {descriptor.node}.{port}",
                    message_class=cls,
                    inbox=None,
                    consts=tuple(spec.consts.items),
                    run_blocking=blocking,
                )
                continue
            inbox.add_port(port)
            run.inputs[port] = InputStream(
                port=port,
                edge=f"{spec.edge} -> {descriptor.node}.{port}",
                message_class=cls,
                inbox=inbox,
                node=descriptor.node,
                token=spec.token,
                fetch=fetch,
                open_bytes=functools.partial(offload.open_bytes, store, flow_id=descriptor.flow_id),
                run_blocking=blocking,
            )
            streams.attach(spec.queue, inbox, port)
        for port, out in descriptor.outputs.items():
            writer = run.writers[port] = FrameWriter(
                streams.sink(out.queues),
                settings=settings,
                flusher=flusher,
                typename=out.typename,
                token=out.token,
                offloader=None
                if store is None
                else Offloader(
                    store,
                    flow_id=descriptor.flow_id,
                    node=descriptor.node,
                    port=port,
                    stop=run.stop,
                ),
            )
            run.outputs[port] = OutputStream(
                node=descriptor.node,
                port=port,
                message_class=classes(out.typename),
                writer=writer,
                run_blocking=blocking,
            )
        writers = list(run.writers.values())

        def flush_outputs() -> None:
            for writer in writers:
                writer.flush_nowait()

        inbox.on_idle = flush_outputs
        job = Job(
            flow_id=descriptor.flow_id,
            node=descriptor.node,
            progdef=descriptor.progdef,
            inputs=run.inputs,
            outputs=run.outputs,
            inbox=inbox,
            stop=run.stop,
            logger=logging.LoggerAdapter(
                logger, {"flow": descriptor.flow_id, "node": descriptor.node}
            ),  # type: ignore[arg-type]
            secrets=_secrets(program, descriptor.node),
            errors=program.progdef.errors,
        )
        if program.style == "function" and program.pipelined:
            (spec,) = descriptor.inputs.values()
            streamed = spec.WhichOneof("source") == "queue"
            run_pipelined(program, job, inbox, streamed=streamed)
        elif program.style == "function":
            run_handler(program, job)
        elif bridge is not None:
            run_coroutine_job(program.run(job), inbox, bridge)
        else:
            program.run(job)
        for writer in writers:
            writer.close()
        for port, stream in run.inputs.items():
            stream.drain()
            if descriptor.inputs[port].WhichOneof("source") == "queue":
                check_left(stream, inbox.left(port))  # what came after its end-of-stream


def execute(
    run: JobRun,
    load: Any,
    transport: Transport,
    *,
    flusher: Flusher,
    settings: StreamSettings,
    executor_id: str,
    runner: tuple[str, ...] = (),
) -> FailureReport | None:
    """Run a job and turn its panic into a failure report.

    Args:
        load: returns the job's Program (called here so an import error panics the job).
        runner: the folders of the calling runner's own code (beside the executor's), whose
            frames a runtime error's traceback leaves out.

    Returns:
        None when the job ended or was stopped (why it was stopped is then in
        ``run.flow_stopped`` or ``run.stop_reason``); the failure report when it panicked.
    """
    descriptor = run.descriptor
    try:
        run_job(run, load(), transport, flusher=flusher, settings=settings)
    except Stopped as e:
        if run.stop.is_set():
            if not run.flow_stopped and not run.stop_reason:
                # Set by the transport, not by anyone asking: the broker failed the job (a
                # call went unanswered, the connection was lost, a stream was gone), maybe
                # under the Flusher's send of a lingering frame, which tells the writer.
                failed = (w.failed for w in run.writers.values() if w.failed is not None)
                run.stop_reason, run.stop_cause = str(next(failed, e)), StopCause.BROKER
            return None
        error, trace = "Stopped raised without a stop: do not raise Stopped yourself", ""
    except BaseException as e:  # a panic: anything the progdef's code raised
        error = f"{type(e).__name__}: {e}"
        trace = author_traceback(e)
        if isinstance(e, DagyoError) and not _author_frames(e, runner):
            trace = ""  # the runtime's own message says it all; its frames are noise
    else:
        return None
    return failure_report(descriptor, executor=executor_id, error=error, traceback=trace)


def failure_report(
    descriptor: JobDescriptor,
    *,
    executor: str,
    error: str,
    traceback: str = "",
    kind: FailureKind = FAILURE_KIND_PANIC,
) -> FailureReport:
    """The failure report of one job, made now."""
    return FailureReport(
        flow_id=descriptor.flow_id,
        node=descriptor.node,
        progdef=descriptor.progdef,
        executor=executor,
        error=error,
        traceback=traceback,
        kind=kind,
        time=time.time(),
    )


def _author_frames(error: BaseException, runner: tuple[str, ...]) -> bool:
    # The runner calls the loader too: its frames are not the author's either.
    runtime = (_EXECUTOR_DIR, *runner)
    frames = traceback_module.extract_tb(error.__traceback__)
    return any(not f.filename.startswith(runtime) for f in frames)


def _secrets(program: Program, node: str) -> dict[str, str]:
    """The progdef's secrets; a missing one is an error naming the progdef and the node."""
    try:
        return read_secrets(program.progdef)
    except DagyoError as e:
        prefix = f"progdef {program.progdef.name}"
        raise DagyoError(str(e).replace(prefix, f"{prefix}, node {node}", 1)) from None
