"""The watchdog and a flow whose nodes were all cached: its exports come from the replay,
so the wait for their end-of-stream starts when the replay ends, not when the scheduler
started. Under load a replay may end long after the flow was submitted, and its export
frames be read later still; such a flow must not be failed as one whose producer ended
without an end-of-stream."""

from __future__ import annotations

import time

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import NODE_CACHED, ActiveFlow, ExportStream, FlowRuntime
from scheduler.service.liveness import Liveness
from scheduler.service.watchdog import overdue

TIMEOUT_S = 5.0


def cached_flow() -> ActiveFlow:
    record = pb.FlowRecord(id="0123456789ab", created=time.time())
    record.nodes.add(node="names", progdef="source", state=NODE_CACHED)
    record.nodes.add(node="hi", progdef="greet", state=NODE_CACHED)
    export = ExportStream("q", "dagyo.types.Text", "hi.greeting")
    runtime = FlowRuntime(exports={"greetings": export}, replaying=["hi"])
    return ActiveFlow(record, runtime)


def listening_since(seconds_ago: float) -> tuple[Liveness, list[float]]:
    """A liveness that has listened for ``seconds_ago``, and its clock (set it to move)."""
    clock = [time.monotonic() - seconds_ago]
    liveness = Liveness(TIMEOUT_S, clock=lambda: clock[0])
    clock[0] = time.monotonic()
    return liveness, clock


def test_a_replay_that_ends_late_gives_its_exports_the_whole_timeout() -> None:
    # The scheduler has listened for far longer than the timeout when the replay ends.
    liveness, clock = listening_since(10 * TIMEOUT_S)
    flow = cached_flow()
    flow.replay_ended("hi")
    assert flow.runtime.replaying == []
    ends, _ = overdue([flow], liveness, wall=time.time(), now=clock[0])
    assert ends == []


def test_exports_that_never_end_after_the_replay_still_fail_the_flow() -> None:
    liveness, clock = listening_since(10 * TIMEOUT_S)
    flow = cached_flow()
    flow.replay_ended("hi")
    clock[0] = time.monotonic() + 2 * TIMEOUT_S
    ends, _ = overdue([flow], liveness, wall=time.time(), now=clock[0])
    assert [e.error.split(":")[0] for e in ends] == ["export greetings (from hi.greeting)"]
