"""The Python executor, broken on purpose: shows that each conformance case can fail.

``python -m tests.conformance.broken_executor PROGDEF_DIR`` runs ``python -m executor``
with the one promise of docs/protocol.md that ``DAGYO_CONFORMANCE_BREAK`` names broken
(unset: nothing is broken, and the whole suite passes through it). The suite passes its
environment on to the executor, so::

    DAGYO_CONFORMANCE_BREAK=seq python -m pytest tests/conformance \\
        --executor-command "python -m tests.conformance.broken_executor {progdef}"

runs the suite against an executor that skips the seq check. ``breakages.py`` runs every
break against the cases it must fail. Only this wrapper reads the variable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

ENV_BREAK = "DAGYO_CONFORMANCE_BREAK"


def _wrap(
    owner: Any, name: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    setattr(owner, name, wrapper(getattr(owner, name)))


def _admit_patched(change: Callable[[Any, Any], None]) -> None:
    """Change each frame (or the stream's position) before the integrity checks see it."""
    import executor.inputs

    _wrap(
        executor.inputs,
        "admit",
        lambda admit: (
            lambda position, frame, data, where: (
                change(position, frame) if data is not None else None,
                admit(position, frame, data, where),
            )[1]
        ),
    )


def _published_patched(change: Callable[[list[str], bytes], tuple[list[str], bytes]]) -> None:
    """Change each output frame (and the queues it goes to) before it is published."""
    from executor._runtime.transport.rabbitmq import JobStreams

    _wrap(
        JobStreams,
        "publish",
        lambda publish: lambda self, queues, frame: publish(self, *change(list(queues), frame)),
    )


def _reframed(
    change: Callable[[Any], None],
) -> Callable[[list[str], bytes], tuple[list[str], bytes]]:
    from executor.pb.dagyo.v1.frame_pb2 import Frame

    def reframe(queues: list[str], body: bytes) -> tuple[list[str], bytes]:
        frame = Frame.FromString(body)
        change(frame)
        return queues, frame.SerializeToString()

    return reframe


def break_seq() -> None:
    """Skip the seq check: a frame's seq is taken as the one due."""

    def take_as_due(position: Any, frame: Any) -> None:
        if not position.ended:
            position.next_seq = frame.seq

    _admit_patched(take_as_due)


def break_repeat() -> None:
    """Forget the frames taken: a frame delivered again panics instead of being dropped."""
    _admit_patched(lambda position, frame: position.recent.clear())


def break_typename() -> None:
    """Skip the typename check."""
    _admit_patched(lambda position, frame: setattr(frame, "typename", position.typename))


def break_token() -> None:
    """Skip the producer token check."""
    _admit_patched(lambda position, frame: setattr(frame, "token", position.token))


def break_bounds() -> None:
    """Skip the frame bounds (size and item count)."""
    import executor.inputs

    executor.inputs.check_count = lambda items, where: None
    executor.inputs.check_size = lambda data, where: None


def break_malformed() -> None:
    """Drop a frame, or a frame's items, that does not decode, instead of panicking."""
    from executor.core.errors import DecodeError
    from executor.inputs import InputStream

    def decode_frame(original: Callable[..., Any]) -> Callable[..., Any]:
        def quietly(self: Any, data: Any) -> Any:
            try:
                return original(self, data)
            except DecodeError:
                return []

        return quietly

    _wrap(InputStream, "decode_frame", decode_frame)


def break_eos() -> None:
    """Never send end-of-stream."""
    _published_patched(_reframed(lambda frame: setattr(frame, "end_of_stream", False)))


def break_late_eos() -> None:
    """Send end-of-stream half a second after reporting it sent (the job's end may come
    first)."""
    import threading

    from executor._runtime.transport.rabbitmq import JobStreams
    from executor.pb.dagyo.v1.frame_pb2 import Frame

    def later(publish: Callable[..., Any]) -> Callable[..., Any]:
        def send(self: Any, queues: Any, frame: bytes) -> Any:
            if not Frame.FromString(frame).end_of_stream:
                return publish(self, queues, frame)
            threading.Timer(0.5, publish, (self, queues, frame)).start()
            return []

        return send

    _wrap(JobStreams, "publish", later)


def break_order() -> None:
    """Send each frame's items in reverse order."""

    def reverse(frame: Any) -> None:
        items = list(frame.items)[::-1]
        del frame.items[:]
        frame.items.extend(items)

    _published_patched(_reframed(reverse))


def break_fanout() -> None:
    """Send each output's frames to its first queue only."""
    _published_patched(lambda queues, frame: (queues[:1], frame))


def break_backpressure() -> None:
    """Take a nack (a full stream) as sent: the frame is lost."""
    from executor._runtime.transport.rabbitmq import JobStreams

    _wrap(
        JobStreams,
        "publish",
        lambda publish: lambda self, queues, frame: [publish(self, queues, frame)][:0],
    )


def break_slots() -> None:
    """Take every job of the mailbox, whatever the free slots."""
    from executor._runtime.mailbox import Mailbox

    Mailbox.free = property(lambda self: 1000)  # type: ignore[method-assign,assignment]


def break_heartbeat() -> None:
    """Heartbeats name no job."""
    from executor._runtime.service import Executor

    def without_jobs(heartbeat: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def beat(self: Any) -> Any:
            event = heartbeat(self)
            if event is not None:
                del event.heartbeat.jobs[:]
            return event

        return beat

    _wrap(Executor, "_heartbeat", without_jobs)


def break_stop() -> None:
    """Ignore a flow's Stop."""
    from executor._runtime.service import Executor

    _wrap(
        Executor,
        "_on_stop",
        lambda on_stop: (
            lambda self, channel, method, properties, stop: (
                on_stop(self, channel, method, properties, stop) if stop.retire_mailbox else None
            )
        ),
    )


def break_stopped_flow() -> None:
    """Run a job of a flow whose Stop came before it."""
    from executor._runtime.service import Executor

    def forgetting(on_job: Callable[..., Any]) -> Callable[..., Any]:
        def take(self: Any, descriptor: Any) -> Any:
            self._stopped_flows.clear()
            return on_job(self, descriptor)

        return take

    _wrap(Executor, "_on_job", forgetting)


def break_traceback() -> None:
    """Send a panic's failure report without its traceback."""
    import executor._runtime.service as service

    def without_traceback(execute: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            failure = execute(*args, **kwargs)
            if failure is not None:
                failure.traceback = ""
            return failure

        return run

    _wrap(service, "execute", without_traceback)


def break_refuse() -> None:
    """Run a job of another progdef or version."""
    import executor._runtime.service as service

    service.refused = lambda job, progdef, version, mailbox: ""  # type: ignore[assignment]


def break_drain() -> None:
    """Keep taking jobs while draining."""
    from executor._runtime.mailbox import Mailbox

    def as_if_not_draining(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, *args: Any) -> Any:
            draining, self.draining = self.draining, False
            try:
                return method(self, *args)
            finally:
                self.draining = draining

        return call

    _wrap(Mailbox, "_consume", as_if_not_draining)
    _wrap(Mailbox, "_deliver", as_if_not_draining)


def break_errorport() -> None:
    """Send an Error on the error port without the failed item."""
    import executor._runtime.job as job

    def without_item(build: Callable[..., Any]) -> Callable[..., Any]:
        def error(**kwargs: Any) -> Any:
            built = build(**kwargs)
            built.item = b""
            return built

        return error

    _wrap(job, "build_error", without_item)


def break_types() -> None:
    """Read a job's ports without the types its descriptor brings."""
    import executor._runtime.job as job
    from executor.core.types import message_class

    class NoJobTypes:
        def __init__(self, data: bytes, *, source: str) -> None:
            self.message_class = message_class

    job.JobTypes = NoJobTypes  # type: ignore[assignment,misc]


def break_inflight() -> None:
    """Send the results of items in flight as each ends, not in input order."""
    import concurrent.futures

    import executor._runtime.job as job
    from executor._runtime.aio import event_loop
    from executor.errorport import build_error

    def as_they_end(program: Any, run: Any, inbox: Any, *, streamed: bool) -> None:
        (stream,) = run.inputs.values()
        errors = run.outputs.get(program.progdef.errors)
        output = next(o for p, o in run.outputs.items() if p != program.progdef.errors)
        context = program.context()
        while not stream.ended:
            started = {
                event_loop().submit(program.run(context, item)): item
                for item in stream.next_batch()
            }
            for future in concurrent.futures.as_completed(started):
                try:
                    output.send(future.result())
                except Exception as e:
                    item = started[future]
                    errors.send(build_error(node=run.node, progdef=run.progdef, item=item, error=e))

    job.run_pipelined = as_they_end  # type: ignore[assignment]


def break_counts() -> None:
    """Report a job's end without its counts."""
    import executor._runtime.service as service

    def without_counts(job_end: Callable[..., Any]) -> Callable[..., Any]:
        def end(*args: Any, **kwargs: Any) -> Any:
            ended = job_end(*args, **kwargs)
            ended.ended.items_sent.clear()
            ended.ended.items_received.clear()
            return ended

        return end

    _wrap(service, "job_end", without_counts)


BREAKS: dict[str, Callable[[], None]] = {
    name.removeprefix("break_").replace("_", "-"): function
    for name, function in list(globals().items())
    if name.startswith("break_")
}


def main() -> int:
    name = os.environ.get(ENV_BREAK, "")
    if name and name not in BREAKS:
        print(
            f"{ENV_BREAK}={name!r} is no break: one of {', '.join(sorted(BREAKS))}", file=sys.stderr
        )
        return 2
    if name:
        BREAKS[name]()
        print(f"broken executor: {BREAKS[name].__doc__}", file=sys.stderr, flush=True)
    from executor.__main__ import main as executor_main

    return executor_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
