"""Several schedulers on one vhost and one PostgreSQL database (docs/scaling.md, Several
schedulers): flows submitted to any of them run, each owned by one scheduler through its
shard's fenced lease; any scheduler answers for any flow; a lease edited by hand to a
bogus owner is taken back once it runs out."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from executor.core.constants import SHARDS
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from tests.schedulers import ENDED, HELLO, LEASE_S, greetings, schedulers, texts
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("schedulers")]


def test_three_schedulers_run_hello_flows_submitted_round_robin(
    broker_url: str, tmp_path: Path
) -> None:
    with schedulers(broker_url, tmp_path, 3) as cluster:
        # Each takes its fair share of the 16 shards once all three are live.
        def shared() -> bool:
            owners = {cluster.lease(f"shard-{n:x}")[0] for n in range(SHARDS)}
            return len(owners) == 3

        eventually(shared, 60, what="the shards shared by the three schedulers")
        ring = itertools.cycle(cluster.schedulers)
        flows = [(next(ring).client.submit(HELLO)) for _ in range(60)]
        owners = {cluster.owner_pid(flow_id) for flow_id in flows}
        assert owners == {s.pid for s in cluster.schedulers}  # each ran some

        def ended(flow_id: str) -> pb.FlowRecord | None:
            record = next(ring).client.get(flow_id)  # any scheduler answers
            return record if record.state in ENDED else None

        for flow_id in flows:
            record = eventually(lambda f=flow_id: ended(f), 120, what=f"flow {flow_id} ended")
            assert record.state == pb.FLOW_STATE_SUCCEEDED, record.failure.error
            assert texts(record) == greetings(3)


def test_watch_and_cancel_through_a_scheduler_that_does_not_own_the_flow(
    broker_url: str, tmp_path: Path
) -> None:
    with schedulers(broker_url, tmp_path, 2) as cluster:
        owner, other = cluster.schedulers
        flow_id = owner.client.submit(HELLO, sets=["names.count=2000000"])
        assert cluster.owner_pid(flow_id) == owner.pid

        watch = other.client.watch(flow_id)
        exported = 0
        for event in watch:
            exported += event.HasField("export")
            if exported >= 3:
                break
        record = other.client.cancel(flow_id)
        assert record.failure.kind == 4 or record.state == pb.FLOW_STATE_CANCELLED  # CANCELLED

        def cancelled() -> pb.FlowRecord | None:
            record = other.client.get(flow_id)
            return record if record.state in ENDED else None

        record = eventually(cancelled, 60, what="the flow cancelled by its owner")
        assert record.state == pb.FLOW_STATE_CANCELLED
        assert record.failure.error == "cancelled by a user"
        assert texts(record)[:3] == greetings(3)


def test_a_lease_edited_to_a_bogus_owner_is_taken_back_after_the_lease(
    broker_url: str, tmp_path: Path
) -> None:
    with schedulers(broker_url, tmp_path, 2) as cluster:
        _, epoch = cluster.lease("shard-3")
        cluster.execute(
            "UPDATE flow_leases SET owner = 'bogus', expires = expires + %s WHERE flow_id = %s",
            LEASE_S,
            "shard-3",
        )

        def taken_back() -> bool:
            owner, now = cluster.lease("shard-3")
            return owner != "bogus" and now > epoch

        eventually(taken_back, 10 * LEASE_S + 30, what="shard 3 taken back from the bogus owner")
        live = {str(s.pid) for s in cluster.schedulers}
        assert cluster.lease("shard-3")[0].split("-")[-2] in live
        client = cluster.schedulers[0].client
        flows = [s.client.submit(HELLO) for s in cluster.schedulers for _ in range(4)]

        def ended(flow_id: str) -> pb.FlowRecord | None:
            record = client.get(flow_id)
            return record if record.state in ENDED else None

        for flow_id in flows:
            record = eventually(lambda f=flow_id: ended(f), 60, what="a hello flow afterwards")
            assert record.state == pb.FLOW_STATE_SUCCEEDED, record.failure.error
