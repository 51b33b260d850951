"""Wire names and time defaults, in one place.

Every name that appears on the broker and every default timeout lives here, with its unit
in its name, so docs/protocol.md and the code cannot drift apart silently.
"""

from __future__ import annotations

from enum import StrEnum

# --- environment --------------------------------------------------------------------------
ENV_QUEUE = "DAGYO_QUEUE"
ENV_QUEUE_TYPE = "DAGYO_QUEUE_TYPE"


class QueueType(StrEnum):
    """The type of dagyo's durable queues (mailboxes, the scheduler's events and failures,
    trigger queues): ``DAGYO_QUEUE_TYPE``, see executor.core.settings.queue_type_of."""

    CLASSIC = "classic"
    QUORUM = "quorum"


ENV_JOBS = "DAGYO_JOBS"
ENV_PROGDEF_VERSION = "DAGYO_PROGDEF_VERSION"
DEFAULT_QUEUE_URL = "amqp://guest:guest@localhost:5672/%2F"

# --- broker topology (see docs/protocol.md) ----------------------------------------------
PREFIX = "dagyo"
MAILBOX_PREFIX = f"{PREFIX}.mailbox"  # + ".{progdef}.{version}"
FLOW_PREFIX = f"{PREFIX}.flow"  # + ".{flow_id}.…": every queue a flow owns
EVENTS_EXCHANGE = f"{PREFIX}.events"  # topic: executor -> scheduler events
EVENTS_QUEUE = f"{PREFIX}.scheduler.events"  # + ".{shard}": one shard's job events
FAILURES_EXCHANGE = f"{PREFIX}.failures"  # topic, routing key = "{shard}.{flow}"
FAILURES_QUEUE = f"{PREFIX}.scheduler.failures"  # + ".{shard}": one shard's reports
# Flows are split into SHARDS shards, a flow's shard being the first hex character of its
# id; each shard is owned by one scheduler, which consumes its queues (docs/protocol.md).
SHARDS = 16
STOP_EXCHANGE = f"{PREFIX}.stop"  # fanout: scheduler -> every executor
TRIGGER_QUEUE_PREFIX = f"{PREFIX}.triggers"  # + ".{trigger}": an AMQP trigger's CloudEvents

# --- how a job ended: JobEnded.outcome (see docs/protocol.md, Jobs) ---------------------
JOB_ENDED = ""  # it returned and every output sent end-of-stream
JOB_PANICKED = "panicked"
JOB_STOPPED = "stopped"  # a Stop for its flow
JOB_BROKER = "broker"  # the broker failed it
JOB_REFUSED = "refused"  # not a job for this executor's progdef and version
JOB_EXECUTOR = "executor"  # the executor stopped it itself (a drain past its grace)

# --- streams ------------------------------------------------------------------------------
# A frame is flushed when it holds this many bytes of items or this many items…
FRAME_MAX_BYTES = 128 * 1024
FRAME_MAX_ITEMS = 8192
# …or when its first item has waited this long. A job about to wait for input sends what
# it holds at once, so the linger only holds back items of a job busy elsewhere (author
# code between sends); long enough that a fast producer fills frames.
FRAME_LINGER_S = 0.02
# A frame of messages (within one process, see executor/core/frames.py) sizes every 16th item
# and counts the items between as that size: serializing each item only to size it would
# cost as much as the serializing that such frames save.
FRAME_SIZE_SAMPLE_ITEMS = 16
# What a consumer takes in one frame at most, checked before it decodes anything
# (docs/protocol.md, Streams): FRAME_MAX_ITEMS items, and FRAME_MAX_BYTES of items plus
# one item of up to ITEM_MAX_BYTES (the item that filled the frame). A producer may not be
# configured past them (DAGYO_FRAME_MAX_ITEMS, DAGYO_FRAME_MAX_BYTES). Half the broker's
# default largest message (128 MiB), so a frame the bound lets through is one it takes.
ITEM_MAX_BYTES = 64 * 1024 * 1024
FRAME_RECEIVE_MAX_BYTES = FRAME_MAX_BYTES + ITEM_MAX_BYTES + 4096

# Offloaded items (docs/protocol.md, Offloaded items): an item whose serialized size is
# past OFFLOAD_BYTES goes to the object store DAGYO_OBJECTS and travels by reference. At
# most ITEM_MAX_BYTES, so that an item kept inline always fits a frame.
ENV_OBJECTS = "DAGYO_OBJECTS"
ENV_OFFLOAD_BYTES = "DAGYO_OFFLOAD_BYTES"
OFFLOAD_BYTES = 1024 * 1024
# Every flow's objects are kept under OBJECTS_FLOWS_PREFIX + "{flow}/".
OBJECTS_FLOWS_PREFIX = "flows/"
# A consumer remembers the CRC-32 and size of this many of the last frames it took, so a
# frame delivered again (a reconnection, a producer publishing it again after an alarm) is
# told apart from a different frame under a seq already taken. More than a consumer holds
# unacked (STREAM_PREFETCH_FRAMES; the scheduler's 8 per export), which is what comes again.
REPEAT_WINDOW_FRAMES = 16
# How many frames a stream holds before its producer waits (backpressure).
STREAM_MAX_FRAMES = 16
# How many frames a consumer takes ahead of the job reading them.
STREAM_PREFETCH_FRAMES = 4

# Streams allocate and drop many small objects (decoded items, frames); collecting the young
# generation every 10 000 allocations instead of CPython's 700 cuts 15-25 % of a stream's
# cost in a process that runs jobs (measured with bench/stream.py).
GC_GEN0_THRESHOLD = 10_000

# --- liveness and shutdown ----------------------------------------------------------------
HEARTBEAT_INTERVAL_S = 2.0
DRAIN_GRACE_S = 60.0
# How often a writer waiting for room looks at its job's stop signal.
STOP_POLL_S = 0.1
# How long a reader waiting for a frame sleeps between looks at its stop signal: a stop
# wakes it at once (Inbox.wake, StopSignal), so this is only a safety net. Short, it made
# thousands of idle readers wake thousands of times a second: at 2 s, 6000 idle jobs of
# one executor took both cores and starved its I/O thread.
IDLE_WAIT_S = 30.0

# --- the SDK ------------------------------------------------------------------------------
DEFAULT_MAX_JOBS = 100
DEFAULT_RETRY_ATTEMPTS = 1
DEFAULT_RETRY_BACKOFF_S = 0.1


# The typename of a failed item sent to a progdef's error port.
ERROR_TYPE = "dagyo.types.Error"


# --- names of queues and routing keys ----------------------------------------------------
def flow_queue(flow_id: str, name: str) -> str:
    """A queue of one flow: ``name`` is what follows the flow's prefix (``in.NODE.PORT``)."""
    return f"{FLOW_PREFIX}.{flow_id}.{name}"


def stream_queue(flow_id: str, node: str, port: str) -> str:
    """The queue of the stream feeding input ``node.port`` (each input has one source)."""
    return flow_queue(flow_id, f"in.{node}.{port}")


def export_queue(flow_id: str, export: str) -> str:
    """The queue the scheduler reads one export of a flow from."""
    return flow_queue(flow_id, f"export.{export}")


def mailbox_name(progdef: str, version: str) -> str:
    """Return the mailbox queue name of one progdef version."""
    return f"{MAILBOX_PREFIX}.{progdef}.{version}"


def parse_mailbox(mailbox: str) -> tuple[str, str] | None:
    """The (progdef, version) a mailbox name stands for (see mailbox_name), or None for
    another queue."""
    prefix = f"{MAILBOX_PREFIX}."
    progdef, dot, version = mailbox.removeprefix(prefix).partition(".")
    if not mailbox.startswith(prefix) or not dot or not progdef or not version or "." in version:
        return None
    return progdef, version


def stop_queue(executor: str) -> str:
    """The exclusive queue an executor takes Stop messages from (bound to STOP_EXCHANGE)."""
    return f"{STOP_EXCHANGE}.{executor}"


def trigger_queue(trigger: str) -> str:
    """The queue an AMQP trigger's CloudEvents wait in for the scheduler."""
    return f"{TRIGGER_QUEUE_PREFIX}.{trigger}"


def shard_of(flow_id: str) -> str:
    """The shard of a flow: the first hex character of its id (``0``…``f``)."""
    return flow_id[:1] or "0"


def shard_events_queue(shard: str) -> str:
    """The durable queue of one shard's job events, for the shard's owner."""
    return f"{EVENTS_QUEUE}.{shard}"


def shard_failures_queue(shard: str) -> str:
    """The durable queue of one shard's failure reports, for the shard's owner."""
    return f"{FAILURES_QUEUE}.{shard}"


def failure_key(flow_id: str) -> str:
    """The routing key of a flow's failure reports on FAILURES_EXCHANGE."""
    return f"{shard_of(flow_id)}.{flow_id}"


def flow_of_failure_key(routing_key: str) -> str:
    """The flow id a failure report's routing key names (see failure_key)."""
    return routing_key.rpartition(".")[2]


# Routing keys of the events an executor publishes to EVENTS_EXCHANGE: the job events go
# to the shard of the job's flow, heartbeats and goodbyes to every scheduler.
JOB_STARTED_KEY = "job.started"
JOB_ENDED_KEY = "job.ended"


def job_started_key(flow_id: str) -> str:
    """The routing key of a job's started event."""
    return f"{JOB_STARTED_KEY}.{shard_of(flow_id)}"


def job_ended_key(flow_id: str) -> str:
    """The routing key of a job's ended event."""
    return f"{JOB_ENDED_KEY}.{shard_of(flow_id)}"


def heartbeat_key(executor: str) -> str:
    """The routing key of an executor's heartbeats."""
    return f"heartbeat.{executor}"


def goodbye_key(executor: str) -> str:
    """The routing key of the goodbye an executor says when it stops pulling its mailbox."""
    return f"goodbye.{executor}"


# --- connections --------------------------------------------------------------------------
# A lost broker connection is retried for as long as the process runs: first after
# RECONNECT_DELAY_S, the wait doubling after each failed attempt up to RECONNECT_MAX_DELAY_S
# (DAGYO_RECONNECT_MAX_DELAY_S overrides the cap, so tests can keep it short).
RECONNECT_DELAY_S = 0.5
RECONNECT_MAX_DELAY_S = 30.0
ENV_RECONNECT_MAX_DELAY_S = "DAGYO_RECONNECT_MAX_DELAY_S"
# pika's AMQP heartbeat: how soon a dead TCP connection is noticed (not dagyo heartbeats).
AMQP_HEARTBEAT_S = 10
# A publish into a full stream waits this long first, doubling up to the maximum.
FULL_STREAM_BACKOFF_S = 0.001
FULL_STREAM_BACKOFF_MAX_S = 0.05
# An executor of --one-job (a pod of a progdef of scaling.mode job) that got no job for this
# long exits 0 (DAGYO_ONE_JOB_IDLE_S): another pod took the job it was started for.
ENV_ONE_JOB_IDLE_S = "DAGYO_ONE_JOB_IDLE_S"
ONE_JOB_IDLE_S = 60.0
# How long an executor remembers a stopped flow, to drop its jobs still in a mailbox.
STOPPED_FLOW_MEMORY_S = 600.0
EXECUTOR_METRICS_PORT = 9100
# The interface health and metrics listen on (DAGYO_METRICS_ADDR): every one by default, as
# Kubernetes probes and Prometheus reach a pod on its own address; `dagyo up` uses loopback.
ENV_METRICS_ADDR = "DAGYO_METRICS_ADDR"
ENV_METRICS_PORT = "DAGYO_METRICS_PORT"
DEFAULT_METRICS_HOST = "0.0.0.0"
# Channels an executor keeps open and set up for its next jobs: opening and setting up a
# channel costs three broker round trips at the start of every job otherwise.
CHANNELS_READY = 2
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"

# The AMQP app_id of what the scheduler publishes: it skips its own failure reports when
# they come back on its failures queue.
SCHEDULER_APP_ID = "dagyo-scheduler"
