"""CloudEvents triggers end to end: flows started by events POSTed over HTTP (binary and
structured modes) or published on an AMQP exchange, on the real broker, scheduler and
executors; batches, bursts, tokens and `dagyo triggers`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from executor.core.progdef import load_catalogue
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import (
    Authenticator,
    Principal,
    Quotas,
    TokenFile,
    token_digest,
    tokens_json,
)
from scheduler.service.store import SqliteStore
from scheduler.service.trigger_firing import Firing
from scheduler.service.triggers import load_triggers
from tests.cluster import LocalCluster, state_of
from tests.conftest import PROGDEFS, ROOT
from tests.scheduler.trigger_files import UPLOAD, write_triggers
from tests.waiting import eventually

# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("triggers")
    exchange = f"dagyo-test-events-{uuid.uuid4().hex[:8]}"
    folder = write_triggers(
        workdir / "triggers",
        broken={"name": "broken", "flow": "nowhere.json", "match": {"type": "x"}},
        burst={**UPLOAD, "name": "burst", "match": {"type": "com.example.burst"}},
        **{
            "by-amqp": {
                **UPLOAD,
                "name": "by-amqp",
                "match": {"type": "com.example.published"},
                "amqp": {"exchange": exchange, "routing_key": "objects.#"},
            }
        },
    )
    started = LocalCluster(broker_url, workdir, names=("greet",))
    started.local.settings = dataclasses.replace(
        started.local.settings,
        triggers_dir=folder,
        triggers_http="127.0.0.1:0",
        triggers_waiting=100,
    )
    started.start()
    started.exchange = exchange  # type: ignore[attr-defined]
    yield started
    with started.channel() as channel:
        channel.queue_delete("dagyo.triggers.by-amqp")
        channel.exchange_delete(exchange)
    started.close()


def url_of(cluster: LocalCluster) -> str:
    assert cluster.scheduler is not None and cluster.scheduler.triggers is not None
    http = cluster.scheduler.triggers.http
    assert http is not None
    return f"http://{http.address}/"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def binary(event_id: str, data: Any, kind: str = "com.example.object.created") -> dict[str, Any]:
    return {
        "body": json.dumps(data).encode(),
        "headers": {
            "ce-id": event_id,
            "ce-source": "s3://photos/bucket",
            "ce-type": kind,
            "ce-specversion": "1.0",
            "content-type": "application/json",
        },
    }


def structured(event_id: str, data: Any, kind: str = "com.example.object.created") -> dict:
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": "s3://photos/bucket",
        "type": kind,
        "datacontenttype": "application/json",
        "data": data,
    }
    return {
        "body": json.dumps(envelope).encode(),
        "headers": {"content-type": "application/cloudevents+json"},
    }


def greetings(cluster: LocalCluster, flow_id: str) -> list[str]:
    record = cluster.wait(flow_id)
    assert state_of(record) == "succeeded", record
    return [json.loads(export.value_json)["text"] for export in record.exports]


@pytest.mark.parametrize("mode", [binary, structured], ids=["binary", "structured"])
def test_an_http_cloudevent_starts_its_flow_and_again_starts_none(
    cluster: LocalCluster, mode: Any
) -> None:
    event_id = uuid.uuid4().hex
    status, answer = post(url_of(cluster), **mode(event_id, {"key": "photos/a.jpg"}))
    assert status == 202, answer
    (flow_id,) = answer["flow_ids"]
    assert greetings(cluster, flow_id) == ["hello photos/a.jpg"]
    status, again = post(url_of(cluster), **mode(event_id, {"key": "photos/a.jpg"}))
    assert (status, again) == (200, {"flow_ids": [flow_id], "duplicate": True})


@pytest.mark.parametrize(
    ("message", "status", "error"),
    [
        ({"body": b"hello", "headers": {"content-type": "text/plain"}}, 400, "not a CloudEvent"),
        (binary("n1", {"key": "k"}, kind="com.example.other"), 400, "matches no trigger"),
        (binary("n2", {"name": "k"}), 400, "has no $.data.key, which trigger on-upload binds"),
        (
            binary("n3", {"key": {"nested": 1}}),
            400,
            "is not the JSON form of dagyo.types.Text",
        ),
    ],
    ids=["not-a-cloudevent", "no-match", "missing-field", "wrong-type"],
)
def test_a_bad_event_is_refused_with_the_reason(
    cluster: LocalCluster, message: dict[str, Any], status: int, error: str
) -> None:
    answer_status, answer = post(url_of(cluster), **message)
    assert answer_status == status and error in answer["error"], answer


def started_flows(url: str, answer: dict[str, Any]) -> list[str]:
    """The flows of an event answered as waiting in a batch, once they started (its status)."""
    status_url = url.rstrip("/") + answer["status"]

    def status() -> dict[str, Any]:
        with urllib.request.urlopen(status_url, timeout=30) as reply:
            return dict(json.loads(reply.read()))

    started = eventually(
        status, 60, until=lambda s: not s["waiting"], what=f"the batch of {answer} started"
    )
    return list(started["flow_ids"])


def test_a_batch_of_concurrent_events_starts_one_flow_with_list_consts(
    cluster: LocalCluster,
) -> None:
    answers: list[tuple[int, dict[str, Any]]] = []
    keys = [f"k{n}" for n in range(3)]

    def send(key: str) -> None:
        answers.append(
            post(
                url_of(cluster), **binary(uuid.uuid4().hex, {"key": key}, kind="com.example.batch")
            )
        )

    threads = [threading.Thread(target=send, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status for status, _ in answers} == {202}, answers
    flow_ids = {tuple(started_flows(url_of(cluster), answer)) for _, answer in answers}
    assert len(flow_ids) == 1, flow_ids
    (flow_id,) = flow_ids.pop()
    assert sorted(greetings(cluster, flow_id)) == [f"hello {key}" for key in keys]


def test_events_sent_one_after_another_are_answered_at_once_and_share_a_batch(
    cluster: LocalCluster,
) -> None:
    """The batched trigger waits 10 s for 3 events: a sender posting them in a row is
    answered at each (not when the flow starts), and the three start one flow."""
    keys = [f"seq{n}" for n in range(3)]
    answers = []
    for key in keys:
        status, answer = post(
            url_of(cluster), **binary(uuid.uuid4().hex, {"key": key}, kind="com.example.batch")
        )
        assert status == 202, answer
        assert answer["waiting"] == ["batched"] and answer["status"].startswith("/events?"), answer
        answers.append(answer)
    flow_ids = {tuple(started_flows(url_of(cluster), answer)) for answer in answers}
    assert len(flow_ids) == 1, flow_ids
    (flow_id,) = flow_ids.pop()
    assert sorted(greetings(cluster, flow_id)) == [f"hello {key}" for key in keys]


def test_the_status_of_an_event_no_trigger_took_is_404(cluster: LocalCluster) -> None:
    url = url_of(cluster) + "events?source=s3%3A%2F%2Fnowhere&id=never-sent"
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(url, timeout=30)
    assert answer.value.code == 404
    assert "no trigger took event 'never-sent'" in json.loads(answer.value.read())["error"]


def firing_of(cluster: LocalCluster, trigger: str, event_id: str) -> pb.TriggerFiring:
    assert cluster.scheduler is not None

    def firing() -> pb.TriggerFiring | None:
        rows = client.triggers()
        found = (f for r in rows if r.name == trigger for f in r.firings if f.event_id == event_id)
        return next(found, None)

    with SchedulerClient(cluster.scheduler.address) as client:
        found = eventually(firing, what=f"trigger {trigger} fired for event {event_id}")
    assert found is not None
    return found


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_an_amqp_cloudevent_starts_its_flow_once(cluster: LocalCluster, mode: str) -> None:
    event_id = uuid.uuid4().hex
    data = {"key": "photos/b.jpg"}
    if mode == "binary":
        headers = {
            "ce-id": event_id,
            "ce-source": "s3://photos/bucket",
            "ce-type": "com.example.published",
            "ce-specversion": "1.0",
        }
        properties = pika.BasicProperties(content_type="application/json", headers=headers)
        body = json.dumps(data).encode()
    else:
        properties = pika.BasicProperties(content_type="application/cloudevents+json")
        body = json.dumps(
            {
                "specversion": "1.0",
                "id": event_id,
                "source": "s3://photos/bucket",
                "type": "com.example.published",
                "data": data,
            }
        ).encode()
    exchange = cluster.exchange  # type: ignore[attr-defined]
    with cluster.channel() as channel:
        for _ in range(2):  # delivered twice: one flow
            channel.basic_publish(exchange, "objects.created", body, properties)
    firing = firing_of(cluster, "by-amqp", event_id)
    (flow_id,) = firing.flow_ids
    assert greetings(cluster, flow_id) == ["hello photos/b.jpg"]
    eventually(lambda: cluster.messages("dagyo.triggers.by-amqp") == 0, what="both acked")
    assert firing_of(cluster, "by-amqp", event_id).flow_ids == [flow_id]
    assert cluster.queue_consumers("dagyo.triggers.by-amqp") == 1


def test_dagyo_triggers_lists_the_triggers_their_firings_and_the_refused_file(
    cluster: LocalCluster,
) -> None:
    assert cluster.scheduler is not None
    event_id = uuid.uuid4().hex
    status, answer = post(url_of(cluster), **binary(event_id, {"key": "listed"}))
    assert status == 202, answer
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "triggers"],
        cwd=ROOT,
        env={**os.environ, "DAGYO_SCHEDULER": cluster.scheduler.address},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.startswith("on-upload  http  type=com.example.object.created") for line in lines
    )
    assert any(event_id in line and answer["flow_ids"][0] in line for line in lines), done.stdout
    assert any(line.startswith("by-amqp  amqp ") for line in lines)
    assert any(
        "broken" in line and "nowhere.json: cannot read the flow file" in line for line in lines
    )


@pytest.mark.slow
def test_a_burst_of_1000_events_waits_bounded_and_loses_none(cluster: LocalCluster) -> None:
    """Past DAGYO_TRIGGERS_WAITING (100 here) events are told to come again (503); every
    one of 1000 starts exactly one flow. Prints the rate flows were started at."""
    ids = [uuid.uuid4().hex for _ in range(1000)]
    flow_of: dict[str, str] = {}
    busy = 0
    lock = threading.Lock()

    def send(chunk: list[str]) -> None:
        nonlocal busy
        for event_id in chunk:
            while True:
                status, answer = post(
                    url_of(cluster), **binary(event_id, {"key": event_id}, kind="com.example.burst")
                )
                if status != 503:
                    break
                with lock:
                    busy += 1
                time.sleep(1.0)  # as Retry-After says
            assert status == 202, answer
            with lock:
                flow_of[event_id] = answer["flow_ids"][0]

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(ids[n::150],)) for n in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert len(flow_of) == 1000 and len(set(flow_of.values())) == 1000
    print(
        json.dumps(
            {
                "events": 1000,
                "seconds": round(elapsed, 2),
                "flows_per_s": round(1000 / elapsed, 1),
                "told_to_retry": busy,
            }
        )
    )
    assert busy > 0  # 150 senders against room for 100: the bound held
    for flow_id in list(flow_of.values())[-20:]:
        assert state_of(cluster.wait(flow_id, timeout_s=120)) == "succeeded"


def test_with_tokens_on_an_event_needs_a_token_and_reaches_only_its_tenants_triggers(
    tmp_path: Path,
) -> None:
    from scheduler.service.trigger_http import HttpSource

    folder = write_triggers(tmp_path / "triggers")
    (folder / "on-upload.json").write_text(json.dumps({**UPLOAD, "tenant": "team-a"}))
    (folder / "batched.yaml").unlink()
    tokens = tmp_path / "tokens.json"
    table = {
        token_digest("alice"): Principal("team-a", "user", Quotas()),
        token_digest("bob"): Principal("team-b", "user", Quotas()),
    }
    tokens.write_text(tokens_json(table))
    authenticator = Authenticator(TokenFile(tokens))
    triggers, _ = load_triggers(folder, tenant_required=True)

    def submit(principal: Principal, flow_json: str, *, source: str, sets: list[str]) -> str:
        return f"flow-of-{principal.tenant}"

    firing = Firing(
        triggers=triggers,
        invalid=[],
        submit=submit,
        catalogue=lambda: load_catalogue(PROGDEFS),
        authenticator=authenticator,
        store=SqliteStore(":memory:").firings,
        max_waiting=10,
    )
    http = HttpSource("127.0.0.1:0", firing=firing, authenticator=authenticator)
    firing.start()
    http.start()
    try:
        url = f"http://{http.address}/"
        message = binary("t1", {"key": "a.jpg"})
        status, answer = post(url, **message)
        assert status == 401 and "requires a token" in answer["error"]
        bob = {**message["headers"], "Authorization": "Bearer bob"}
        status, answer = post(url, message["body"], bob)
        assert status == 400 and "no triggers for these events" in answer["error"]
        alice = {**message["headers"], "Authorization": "Bearer alice"}
        assert post(url, message["body"], alice) == (202, {"flow_ids": ["flow-of-team-a"]})
    finally:
        http.stop()
        firing.stop()
