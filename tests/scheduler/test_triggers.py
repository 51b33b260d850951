"""CloudEvents triggers without a broker: trigger files, matching, binding, and how a
trigger's flows are submitted (events over HTTP and AMQP: test_trigger_events.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from executor.core.errors import EventRefused, FiringFailed, FlowInvalid, QuotaExceeded
from executor.core.progdef import load_catalogue
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import (
    Authenticator,
    Principal,
    Quotas,
    TokenFile,
    token_digest,
    tokens_json,
)
from scheduler.service.store import SqliteStore, TriggerFirings
from scheduler.service.trigger_firing import Firing
from scheduler.service.triggers import bind, load_triggers, parse_trigger
from tests.conftest import EXAMPLES, PROGDEFS
from tests.scheduler.trigger_files import UPLOAD, write_triggers
from tests.waiting import eventually


def event(event_id: str, data: Any, **attributes: str) -> CloudEvent:
    return CloudEvent(
        attributes={
            "id": event_id,
            "source": "s3://photos/bucket",
            "type": "com.example.object.created",
            "specversion": "1.0",
            **attributes,
        },
        data=data,
    )


# --- files, matching, binding (no broker) -------------------------------------------------


def test_trigger_files_in_json_and_yaml_load_and_an_invalid_one_stops_no_other(
    tmp_path: Path,
) -> None:
    folder = write_triggers(
        tmp_path,
        broken={
            "name": "broken",
            "flow": "missing.json",
            "match": {"source": "x"},
            "sett": {},
        },
        typo={**UPLOAD, "name": "typo", "set": {"hii.name": "$.dta.key", "hi.name": "$.dta"}},
    )
    triggers, invalid = load_triggers(folder, tenant_required=False)
    assert sorted(t.name for t in triggers) == ["batched", "on-upload"]
    batched = next(t for t in triggers if t.name == "batched")
    assert (batched.max_events, batched.max_wait_s) == (3, 10.0)
    problems = {bad.name: "\n".join(bad.problems) for bad in invalid}
    assert "sett: unknown key (did you mean 'set'?)" in problems["broken"]
    assert (
        "flow: missing.json: cannot read the flow file (No such file or directory)"
        in (problems["broken"])
    )
    assert "match: type is required" in problems["broken"]
    assert "set.hii.name: no node 'hii' in the flow (did you mean 'hi'?)" in problems["typo"]
    assert "no attribute 'dta' (did you mean 'data'?)" in problems["typo"]


def test_the_example_triggers_of_the_readme_load() -> None:
    triggers, invalid = load_triggers(EXAMPLES / "triggers", tenant_required=False)
    assert (sorted(t.name for t in triggers), invalid) == (["on-upload", "uploads-batched"], [])


def test_tokens_on_a_trigger_names_its_tenant(tmp_path: Path) -> None:
    write_triggers(tmp_path)
    with pytest.raises(FlowInvalid, match="tenant: name the tenant whose flows it starts"):
        parse_trigger(tmp_path / "on-upload.json", tenant_required=True)


def test_matching_is_exact_on_type_and_by_prefix_on_source(tmp_path: Path) -> None:
    trigger = parse_trigger(write_triggers(tmp_path) / "on-upload.json")
    assert trigger.matches(event("1", {"key": "a"}))
    assert not trigger.matches(event("1", {"key": "a"}, type="com.example.object.created.v2"))
    assert not trigger.matches(event("1", {"key": "a"}, source="s3://videos"))


def test_binding_takes_attributes_and_data_paths_and_names_a_missing_one(tmp_path: Path) -> None:
    trigger = dataclasses.replace(
        parse_trigger(write_triggers(tmp_path) / "on-upload.json"),
        sets={"a.x": "$.data.key", "a.y": "$.id", "a.z": "$.data.sizes.1", "a.w": "$.source"},
    )
    values = bind(trigger, event("e1", {"key": "k", "sizes": [1, 2]}))
    assert values == {"a.x": "k", "a.y": "e1", "a.z": 2, "a.w": "s3://photos/bucket"}
    with pytest.raises(EventRefused) as refused:
        bind(trigger, event("e2", {"sizes": []}))
    assert 'event "e2" (type "com.example.object.created", source "s3://photos/bucket") has ' in (
        str(refused.value)
    )
    assert "no $.data.key, which trigger on-upload binds to a.x" in str(refused.value)


def test_flows_of_a_trigger_go_as_its_tenant_and_a_quota_refusal_can_be_retried(
    tmp_path: Path,
) -> None:
    folder = write_triggers(tmp_path / "triggers")
    (folder / "on-upload.json").write_text(json.dumps({**UPLOAD, "tenant": "team-a"}))
    for other in ("batched.yaml",):
        (folder / other).unlink()
    tokens = tmp_path / "tokens.json"
    quotas = Quotas(max_running_flows=2)
    tokens.write_text(tokens_json({token_digest("alice"): Principal("team-a", "user", quotas)}))
    triggers, _ = load_triggers(folder, tenant_required=True)
    calls: list[Any] = []

    def submit(principal: Principal, flow_json: str, *, source: str, sets: list[str]) -> str:
        calls.append((pb.SubmitRequest(flow_json=flow_json, source=source, set=sets), principal))
        if len(calls) > 1:
            raise QuotaExceeded("max_running_flows", 2, "the tenant has 2 flows running")
        return "f1"

    firing = Firing(
        triggers=triggers,
        invalid=[],
        submit=submit,
        catalogue=lambda: load_catalogue(PROGDEFS),
        authenticator=Authenticator(TokenFile(tokens)),
        store=SqliteStore(":memory:").firings,
        max_waiting=10,
    )
    firing.start()
    try:
        admin = Principal("ops", "admin", Quotas())
        (first,) = firing.accept(event("e1", {"key": "a.jpg"}), principal=admin)
        assert first.future.result(10) == ["f1"]
        request, principal = calls[0]
        assert (principal.tenant, principal.quotas) == ("team-a", quotas)
        assert list(request.set) == ['hi.name=["a.jpg"]']
        (second,) = firing.accept(event("e2", {"key": "b.jpg"}), principal=admin)
        error = second.future.exception(10)
        assert isinstance(error, FiringFailed) and error.retryable
        with pytest.raises(EventRefused, match="matches no trigger"):
            firing.accept(event("e3", {"key": "c"}), principal=Principal("team-b", "user", quotas))
    finally:
        firing.stop()


def test_an_event_matching_no_trigger_is_told_which_field_of_each_trigger_failed(
    tmp_path: Path,
) -> None:
    triggers, _ = load_triggers(EXAMPLES / "triggers", tenant_required=False)
    firing = Firing(
        triggers=triggers,
        invalid=[],
        submit=lambda principal, flow_json, *, source, sets: "f1",
        catalogue=lambda: load_catalogue(PROGDEFS),
        authenticator=Authenticator(None),
        store=SqliteStore(":memory:").firings,
        max_waiting=10,
    )
    open_principal = Principal("", "admin", Quotas())
    wrong_source = event("e1", {"key": "a"}, type="com.example.object.batch", source="s3://videos")
    with pytest.raises(EventRefused) as refused:
        firing.accept(wrong_source, principal=open_principal)
    message = str(refused.value)
    assert 'uploads-batched takes source "s3://photos*", not "s3://videos"' in message, message
    assert 'on-upload takes type "com.example.object.created", not "com.example.object.batch"' in (
        message
    ), message
    assert "uploads-batched takes type" not in message, message


def batching_firing(folder: Path, store: TriggerFirings, submit: Any, wait_s: float) -> Firing:
    """The test triggers, ``batched`` (3 events of com.example.batch) waiting ``wait_s``."""
    triggers, _ = load_triggers(folder, tenant_required=False)
    triggers = [
        dataclasses.replace(t, max_wait_s=wait_s) if t.name == "batched" else t for t in triggers
    ]
    return Firing(
        triggers=triggers,
        invalid=[],
        submit=submit,
        catalogue=lambda: load_catalogue(PROGDEFS),
        authenticator=Authenticator(None),
        store=store,
        max_waiting=10,
    )


def test_an_event_accepted_into_a_batch_starts_its_flow_after_a_restart(tmp_path: Path) -> None:
    folder = write_triggers(tmp_path / "triggers")
    state = str(tmp_path / "state.db")
    submitted: list[pb.SubmitRequest] = []

    def submit(principal: Principal, flow_json: str, *, source: str, sets: list[str]) -> str:
        submitted.append(pb.SubmitRequest(flow_json=flow_json, source=source, set=sets))
        return "f1"

    admin = Principal("", "admin", Quotas())
    first = batching_firing(folder, SqliteStore(state).firings, submit, wait_s=60)
    first.start()
    (accepted,) = first.accept(
        event("b1", {"key": "kept"}, type="com.example.batch"), principal=admin
    )
    assert not accepted.future.done()  # it waits for more; the scheduler dies here
    again = batching_firing(folder, SqliteStore(state).firings, submit, wait_s=0.1)
    again.start()
    try:
        assert again.status("s3://photos/bucket", "b1", admin) == {
            "flow_ids": [],
            "waiting": ["batched"],
        }
        eventually(lambda: submitted, what="the batch submitted")
        assert [list(r.set) for r in submitted] == [['hi.name=["kept"]']]
        eventually(
            lambda: not again.status("s3://photos/bucket", "b1", admin)["waiting"],
            what="the batch no longer waiting",
        )
        assert again.status("s3://photos/bucket", "b1", admin)["flow_ids"] == ["f1"]
    finally:
        again.stop()


def test_a_batch_whose_flow_cannot_start_yet_is_tried_again(tmp_path: Path) -> None:
    folder = write_triggers(tmp_path / "triggers")
    calls: list[pb.SubmitRequest] = []

    def submit(principal: Principal, flow_json: str, *, source: str, sets: list[str]) -> str:
        calls.append(pb.SubmitRequest(flow_json=flow_json, source=source, set=sets))
        if len(calls) == 1:
            raise QuotaExceeded("max_running_flows", 2, "the tenant has 2 flows running")
        return "f2"

    firing = batching_firing(folder, SqliteStore(":memory:").firings, submit, wait_s=0.1)
    firing.start()
    try:
        admin = Principal("", "admin", Quotas())
        (accepted,) = firing.accept(
            event("r1", {"key": "later"}, type="com.example.batch"), principal=admin
        )
        assert accepted.future.result(30) == ["f2"]
        assert len(calls) == 2
    finally:
        firing.stop()
