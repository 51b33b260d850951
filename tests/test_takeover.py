"""A scheduler that dies or is paused mid-flow: another takes its shards over within the
lease (DAGYO_LEASE_S) and finishes its flows, the exports exact and each once (docs/
scaling.md, Takeover)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from tests.schedulers import ENDED, HELLO, LEASE_S, Schedulers, greetings, schedulers, texts
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("takeover")]

# A flow long enough to be cut in the middle of its exports.
NAMES = 100_000


def assert_exact(record: pb.FlowRecord) -> None:
    """Every export arrived once: those kept are the first ones in order, and with those
    past the record's cap they count every name."""
    assert record.state == pb.FLOW_STATE_SUCCEEDED, record.failure.error
    kept = texts(record)
    assert kept == greetings(len(kept))
    assert len(kept) + record.exports_dropped == NAMES


def started_streaming(cluster: Schedulers, flow_id: str) -> None:
    """Wait until the flow kept some exports, but not all."""
    client = cluster.schedulers[0].client

    def some() -> bool:
        record = client.get(flow_id)
        assert record.state not in ENDED, "the flow ended before it could be cut"
        return len(record.exports) > 0

    eventually(some, 60, what="the first exports kept")


def ended(cluster: Schedulers, pid: int, flow_id: str) -> pb.FlowRecord:
    client = cluster.others(pid)[0].client

    def done() -> pb.FlowRecord | None:
        record = client.get(flow_id)
        return record if record.state in ENDED else None

    return eventually(done, 120, what="the flow ended by the scheduler that took it over")


def test_sigkill_of_the_owner_mid_stream_loses_and_repeats_no_export(
    broker_url: str, tmp_path: Path
) -> None:
    with schedulers(broker_url, tmp_path, 2) as cluster:
        submitter = cluster.schedulers[0]
        flow_id = submitter.client.submit(HELLO, sets=[f"names.count={NAMES}"])
        pid = cluster.owner_pid(flow_id)
        started_streaming(cluster, flow_id)
        os.kill(pid, signal.SIGKILL)
        record = ended(cluster, pid, flow_id)
        assert_exact(record)
        assert cluster.owner_pid(flow_id) != pid


def test_a_paused_owner_woken_after_twice_the_lease_has_its_late_writes_refused(
    broker_url: str, tmp_path: Path
) -> None:
    with schedulers(broker_url, tmp_path, 2) as cluster:
        submitter = cluster.schedulers[0]
        flow_id = submitter.client.submit(HELLO, sets=[f"names.count={NAMES}"])
        pid = cluster.owner_pid(flow_id)
        paused = cluster.by_pid(pid)
        started_streaming(cluster, flow_id)
        os.kill(pid, signal.SIGSTOP)
        try:
            eventually(lambda: cluster.owner_pid(flow_id) != pid, 30, what="the shard taken over")
            time.sleep(2 * LEASE_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        record = ended(cluster, pid, flow_id)
        assert_exact(record)
        # Woken, it let the flow go: it neither ended it nor wrote over its new owner (the
        # record is exact). The shard itself may come back to it later, as the two share
        # the shards out again: that is not a write of the flow.
        eventually(lambda: "dropped" in paused.log(), 30, what="the paused scheduler let go")
        assert paused.process.poll() is None
