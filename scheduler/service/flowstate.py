"""A flow's states, and the flow as the scheduler follows it until it ends.

:class:`FlowRuntime` is what a running flow is resumed from after a scheduler restart
(stored as JSON beside its record); :class:`ActiveFlow` is a flow that has not ended, as
the scheduler holds it in memory.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

NODE_PENDING = pb.NODE_STATE_PENDING
NODE_RUNNING = pb.NODE_STATE_RUNNING
NODE_ENDED = pb.NODE_STATE_ENDED
NODE_FAILED = pb.NODE_STATE_FAILED
NODE_STOPPED = pb.NODE_STATE_STOPPED
NODE_CACHED = pb.NODE_STATE_CACHED
# The states of a node that is done with, in a flow that succeeds.
NODE_DONE = (NODE_ENDED, NODE_CACHED)


class FlowState(StrEnum):
    """A flow's state, kept in step with ``dagyo.v1.FlowState``."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def proto(self) -> pb.FlowState:
        """The ``dagyo.v1.FlowState`` number."""
        return pb.FlowState.Value(f"FLOW_STATE_{self.name}")  # type: ignore[return-value]

    @classmethod
    def from_proto(cls, number: int) -> FlowState:
        """The state of a ``dagyo.v1.FlowState`` number."""
        return cls[pb.FlowState.Name(number).removeprefix("FLOW_STATE_")]  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        """True while the flow has not ended."""
        return self in (FlowState.PENDING, FlowState.RUNNING)


@dataclass
class ExportStream:
    """Where one export of a flow arrives, and how far the scheduler has read it.

    Attributes:
        queue: the export queue.
        typename: what its items decode as.
        source: ``node.port`` of the exported output, for messages.
        next_seq: the seq of the next frame; a frame below it was already kept (it came
            again after a reconnect) and is skipped when its bytes are those kept.
        ended: True once the end-of-stream frame arrived.
        token: the producer token its frames must carry (empty: none is checked).
        recent: ``[seq, crc32, size]`` of the last frames kept (executor.core.framecheck).
    """

    queue: str
    typename: str
    source: str
    next_seq: int = 0
    ended: bool = False
    token: str = ""
    recent: list[list[int]] = field(default_factory=list)


@dataclass
class FlowRuntime:
    """What a running flow is resumed from after a scheduler restart.

    Attributes:
        deadline: Unix time the flow fails at; 0 for none.
        queues: every queue the flow owns (failure, stream and export queues).
        exports: export name -> its stream.
        kept_count / kept_bytes: the exports kept with the record so far.
        finishing: the ``dagyo.v1.FlowState`` the flow is ending with while its queues are
            cleaned up; 0 while it runs.
        announce: True when the scheduler decided the failure itself (lost, deadline,
            cancel, broker) and publishes it on the flow's failure exchange.
        mailboxes: node -> its job's mailbox, for nodes without an autoscaler.
        waiting: True while the flow waits to be admitted (its queues exist, its jobs are
            not published yet).
        held_jobs: the jobs not published yet, each [mailbox, base64 of the descriptor].
        ceilings: mailbox -> the most jobs its autoscaler can run at once, for the
            autoscaled progdefs of the flow.
        error_ports: node -> its progdef's error port, for the nodes that have one.
        recordings: ``node.port`` -> the hidden stream the scheduler records a cacheable
            output from (docs/cache.md), read as an export is.
        replaying: the cached nodes whose streams the scheduler is replaying still.
    """

    deadline: float = 0.0
    queues: list[str] = field(default_factory=list)
    exports: dict[str, ExportStream] = field(default_factory=dict)
    kept_count: int = 0
    kept_bytes: int = 0
    # The submitter's quota of export items kept with the record; 0 for none.
    max_export_items: int = 0
    # The bytes of exports its record has room for, below the message limit (0: the
    # scheduler's export cap alone).
    max_export_bytes: int = 0
    finishing: int = 0
    announce: bool = False
    # node -> the mailbox of its job, for the nodes no autoscaler serves: a job there that
    # no live executor pulls fails the flow instead of waiting forever.
    mailboxes: dict[str, str] = field(default_factory=dict)
    waiting: bool = False
    held_jobs: list[list[str]] = field(default_factory=list)
    ceilings: dict[str, int] = field(default_factory=dict)
    error_ports: dict[str, str] = field(default_factory=dict)
    recordings: dict[str, ExportStream] = field(default_factory=dict)
    replaying: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The runtime as JSON text, for the ``runtime`` column."""
        # Not dataclasses.asdict: it deep-copies, and a wide flow's runtime is large.
        data = {
            **vars(self),
            "exports": {n: vars(e) for n, e in self.exports.items()},
            "recordings": {n: vars(e) for n, e in self.recordings.items()},
        }
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FlowRuntime:
        """The runtime stored by :meth:`to_json`."""
        data: dict[str, Any] = json.loads(text)
        exports = {name: ExportStream(**spec) for name, spec in data.pop("exports", {}).items()}
        recordings = {n: ExportStream(**spec) for n, spec in data.pop("recordings", {}).items()}
        return cls(exports=exports, recordings=recordings, **data)


@dataclass
class ActiveFlow:
    """A flow that has not ended, as the scheduler follows it."""

    record: pb.FlowRecord
    runtime: FlowRuntime
    ended: threading.Event = field(default_factory=threading.Event)
    # Set while Submit is still declaring queues and publishing jobs.
    starting: bool = False
    # Monotonic times: when its jobs were published, and when it last moved (a job
    # started, ended or sent items); and the seconds each running job last said it
    # waits on a full stream. In memory only: a restart counts again.
    admitted_at: float = 0.0
    moved_at: float = 0.0
    blocked: dict[str, float] = field(default_factory=dict)
    # Monotonic time its queues' deletes were last sent (0: not yet).
    deleting_since: float = 0.0
    # The nodes whose job sent its final counts (a job-ended event, whatever its outcome).
    counted: set[str] = field(default_factory=set)
    # Monotonic time past which an ending flow is recorded without the final counts it
    # still waits for (0: it waits for none).
    counts_due: float = 0.0
    # Monotonic times each running job was last named by its executor (its start, then each
    # heartbeat naming it), and the flow's last export frame was read.
    named: dict[str, float] = field(default_factory=dict)
    exported_at: float = 0.0

    @property
    def id(self) -> str:
        """The flow id."""
        return self.record.id

    def node(self, name: str) -> pb.NodeProgress | None:
        """The progress entry of one node, or None."""
        for node in self.record.nodes:
            if node.node == name:
                return node
        return None

    def replay_ended(self, node: str) -> None:
        """A cached node's streams are all sent: its exports may still come, so the wait
        for their end-of-stream starts now (as at a job's end), not at the flow's start."""
        if node in self.runtime.replaying:
            self.runtime.replaying.remove(node)
        self.exported_at = max(self.exported_at, time.monotonic())

    def complete(self) -> bool:
        """True when every job ended (or its node was cached) and every export and recorded
        stream reached end-of-stream."""
        return (
            all(n.state in NODE_DONE for n in self.record.nodes)
            and all(s.ended for s in self.runtime.exports.values())
            and all(s.ended for s in self.runtime.recordings.values())
        )
