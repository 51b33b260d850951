"""The progdef SDK: what a progdef author's code sees.

Stream style::

    def run(job: Job) -> None:
        for item in job.inputs["name"]:
            job.outputs["greeting"].send(Text(text="hello " + item.text))

Function style (one input, at most one output)::

    def init(ctx: Context) -> None:          # once per executor
        ctx.prefix = "hello "

    def handler(ctx: Context, item: Text) -> Text | list[Text] | None:
        return Text(text=ctx.prefix + item.text)

Either may be ``async def`` (``async def init``, ``async def handler``, ``async def
run``): it then runs on the process's event loop, and a function-style progdef's
``"concurrency": N`` lets N items of a job be in flight at once, results still in input
order. An async run reads with ``async for`` and sends with ``await out.asend(item)``::

    async def run(job: Job) -> None:
        async for item in job.inputs["name"]:
            await job.outputs["greeting"].asend(Text(text="hello " + item.text))

Returning ends the job and closes its outputs (end-of-stream); an exception panics the
job with its traceback; a stop raises :class:`~executor.core.errors.Stopped` inside the job
(in a coroutine: ``asyncio.CancelledError`` where it awaits, ``Stopped`` where it awaits
an input or a send).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any, Protocol

from google.protobuf.message import Message

from executor.core.errors import (
    DagyoError,
    Stopped,
    TypeMismatch,
)
from executor.core.frames import FrameForm
from executor.errorport import build_error
from executor.inputs import FrameSource, InputStream, RunBlocking, merge


class Context:
    """Per-executor state for function-style progdefs: logger, secrets, and your own.

    ``init(ctx)`` may set any attribute (``ctx.model = load()``); every ``handler`` call of
    every job on the executor sees it.

    Attributes:
        progdef: the progdef's name.
        logger: a logger named for the progdef.
        secrets: the progdef's declared secrets, read from the environment.
    """

    def __init__(self, *, progdef: str, logger: logging.Logger, secrets: Mapping[str, str]) -> None:
        self.progdef = progdef
        self.logger = logger
        self.secrets = dict(secrets)


class ItemWriter(Protocol):
    """What an output port needs of the runtime: a writer that batches items into frames
    (the runtime's FrameWriter)."""

    @property
    def form(self) -> FrameForm:
        """What its frames are made of: messages are serialized for BYTES only."""
        ...

    @property
    def chunk_items(self) -> int:
        """How many items a caller with many to send hands over at once."""
        ...

    @property
    def items_sent(self) -> int:
        """Items flushed to the stream so far."""
        ...

    def add(self, message: Message) -> None:
        """Add one message."""
        ...

    def add_all(self, messages: list[Message]) -> None:
        """Add several messages."""
        ...

    def extend(self, data: list[bytes]) -> None:
        """Add several serialized items."""
        ...


class OutputStream:
    """One output port: ``send`` items of its typename; the runtime batches them.

    In an ``async def run(job)``, ``await asend(item)`` (``asend_all``) instead: ``send``
    would hold the whole event loop while the stream is full.
    """

    def __init__(
        self,
        *,
        node: str,
        port: str,
        message_class: type[Message],
        writer: ItemWriter,
        run_blocking: RunBlocking | None = None,
    ) -> None:
        self.node = node
        self._run_blocking = run_blocking
        self.port = port
        self.message_class = message_class
        self.typename = message_class.DESCRIPTOR.full_name
        self._writer = writer
        self._add = writer.add

    def new(self, **fields: Any) -> Message:
        """A new message of the port's typename, any type of the registry (built in,
        well-known or the progdef's own): ``job.outputs["points"].new(lat=1.0, lon=2.0)``.

        Raises:
            ValueError: naming the typename, for a field it does not have.
            TypeError: for a value of the wrong type.
        """
        try:
            return self.message_class(**fields)
        except ValueError as e:
            raise ValueError(f"{self.node}.{self.port} ({self.typename}): {e}") from None

    def send(self, item: Message) -> None:
        """Send one item.

        Raises:
            TypeMismatch: when item is not a message of the port's typename.
            Stopped: when the flow is stopped while the stream is full.
        """
        if type(item) is not self.message_class:
            raise TypeMismatch(
                f"{self.node}.{self.port} sends {self.typename} but got "
                f"{_typename_of(item)}: send a {self.typename.rsplit('.', 1)[-1]}"
            )
        self._add(item)

    def send_all(self, items: Any) -> None:
        """Send every item of an iterable, in order (cheaper than ``send`` one by one).

        The iterable is read as it is sent, a frame's worth of items at a time, so a
        generator of any length costs no more memory than one frame.

        Raises:
            TypeMismatch: when an item is not a message of the port's typename; the items
                before it are sent.
            Stopped: when the flow is stopped while the stream is full.
        """
        cls = self.message_class
        chunk_size = self._writer.chunk_items
        if self._writer.form is not FrameForm.BYTES:
            # Messages are kept, not serialized: take a frame's worth at a time and check
            # their types in one go.
            add_all = self._writer.add_all
            iterator = iter(items)
            while batch := list(islice(iterator, chunk_size)):
                if set(map(type, batch)) == {cls}:
                    add_all(batch)
                else:
                    for item in batch:
                        self.send(item)  # up to the wrong one, which raises TypeMismatch
            return
        # Serialized as they are read: each message is dropped while it is still in cache.
        extend = self._writer.extend
        chunk: list[bytes] = []
        for item in items:
            if type(item) is not cls:
                extend(chunk)
                self.send(item)  # raises TypeMismatch
            chunk.append(item.SerializeToString())
            if len(chunk) >= chunk_size:
                extend(chunk)
                chunk = []
        if chunk:
            extend(chunk)

    async def asend(self, item: Message) -> None:
        """``send`` for an ``async def run(job)``: the event loop goes on while the stream
        is full.

        Raises:
            TypeMismatch, Stopped: as :meth:`send`.
            DagyoError: in a plain ``def run(job)`` (use ``send``).
        """
        await self._blocking()(self.send, item)

    async def asend_all(self, items: Any) -> None:
        """``send_all`` for an ``async def run(job)`` (an iterable, not an async one)."""
        await self._blocking()(self.send_all, items)

    def _blocking(self) -> RunBlocking:
        if self._run_blocking is None:
            raise DagyoError(
                f"{self.node}.{self.port}: asend is for an async def run(job); in a plain "
                "def run(job) use send"
            )
        return self._run_blocking

    @property
    def items_sent(self) -> int:
        """Items flushed to the stream so far."""
        return self._writer.items_sent


def _typename_of(item: Any) -> str:
    descriptor = getattr(item, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else type(item).__name__


class Job:
    """One running node of a flow, as its progdef's ``run(job)`` sees it.

    Attributes:
        flow_id, node, progdef: which job this is.
        inputs: port name -> InputStream.
        outputs: port name -> OutputStream.
        logger: a logger naming the flow and node.
        secrets: the progdef's declared secrets, read from the environment.
    """

    def __init__(
        self,
        *,
        flow_id: str,
        node: str,
        progdef: str,
        inputs: Mapping[str, InputStream],
        outputs: Mapping[str, OutputStream],
        inbox: FrameSource,
        stop: threading.Event,
        logger: logging.Logger,
        secrets: Mapping[str, str],
        errors: str = "",
    ) -> None:
        self.flow_id = flow_id
        self.node = node
        self.progdef = progdef
        self.inputs = inputs
        self.outputs = outputs
        self.logger = logger
        self.secrets = dict(secrets)
        self._inbox = inbox
        self._stop = stop
        self._errors = errors

    def fail(self, item: Message, error: BaseException | str) -> None:
        """Send the Error for one failed item to the progdef's error port, and go on.

        Raises:
            DagyoError: when the progdef.json names no error port (``"errors"``), or the
                error is a Stopped or KeyboardInterrupt (a stop is no item's failure).
        """
        if not self._errors:
            raise DagyoError(
                f"progdef {self.progdef}: job.fail needs an error port: declare an output of "
                'type dagyo.types.Error and name it in progdef.json ("errors": "<port>")'
            )
        self.outputs[self._errors].send(
            build_error(node=self.node, progdef=self.progdef, item=item, error=error)
        )

    async def afail(self, item: Message, error: BaseException | str) -> None:
        """``fail`` for an ``async def run(job)``: the event loop goes on while the error
        port's stream is full.

        Raises:
            DagyoError: as :meth:`fail`.
        """
        if not self._errors:
            self.fail(item, error)  # raises, saying what to declare
        await self.outputs[self._errors].asend(
            build_error(node=self.node, progdef=self.progdef, item=item, error=error)
        )

    @property
    def stopped(self) -> bool:
        """True once the flow was told to stop."""
        return self._stop.is_set()

    def check_stop(self) -> None:
        """Raise Stopped when the flow was told to stop; call it in long computations."""
        if self._stop.is_set():
            raise Stopped("the flow was stopped")

    def sleep(self, seconds: float) -> None:
        """Wait, but raise Stopped as soon as the flow is stopped."""
        if self._stop.wait(seconds):
            raise Stopped("the flow was stopped")

    def merge(self, *ports: str) -> Iterator[tuple[str, Any]]:
        """Yield (port, item) from several inputs as items arrive, until all have ended.

        Items of each port keep their order; no threads needed::

            for port, item in job.merge("a", "b"):
                ...
        """
        return merge(self._inbox, [self.inputs[port] for port in (ports or tuple(self.inputs))])
