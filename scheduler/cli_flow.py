"""``dagyo flow …``: submit flows to the scheduler and follow, inspect, list or cancel them.

Also the pieces every command talking to the scheduler shares: ``--scheduler``, ``--json``,
the client whose errors become exit statuses, and the JSON and text forms of records and
failure reports. Exit status: 0 done, 1 the flow failed or was cancelled, 2 a refused
request (an invalid flow, an unknown flow id, an unreadable file), 3 the scheduler is
unreachable.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from google.protobuf import json_format

from executor.constants import DEFAULT_SCHEDULER_ADDRESS, ENV_SCHEDULER
from executor.errors import (
    BrokerUnavailable,
    SchedulerError,
    SchedulerRefused,
    SchedulerUnavailable,
)
from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from executor.pb.dagyo.v1.failure_pb2 import FailureKind, FailureReport
from scheduler.cli import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNREACHABLE,
    _Progress,
    cli,
    fail,
    print_failure,
)
from scheduler.client import SchedulerClient

FLOW_STATES = {
    number: name.removeprefix("FLOW_STATE_").lower() for name, number in pb.FlowState.items()
}
NODE_STATES = {
    number: name.removeprefix("NODE_STATE_").lower() for name, number in pb.NodeState.items()
}
FAILURE_KINDS = {
    number: name.removeprefix("FAILURE_KIND_").lower() for name, number in FailureKind.items()
}


def scheduler_option(function: Any) -> Any:
    """The shared ``--scheduler ADDRESS`` option (env DAGYO_SCHEDULER)."""
    return click.option(
        "--scheduler",
        "address",
        envvar=ENV_SCHEDULER,
        default=DEFAULT_SCHEDULER_ADDRESS,
        show_default=True,
        show_envvar=True,
        metavar="HOST:PORT",
        help="The scheduler's gRPC address.",
    )(function)


def json_option(function: Any) -> Any:
    """The shared ``--json`` flag."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (one object a line) instead of text."
    )(function)


@contextlib.contextmanager
def connected(address: str) -> Iterator[SchedulerClient]:
    """A client of the scheduler; its errors become one line and an exit status."""
    try:
        with SchedulerClient(address) as client:
            yield client
    except (SchedulerUnavailable, BrokerUnavailable) as e:
        fail(str(e), EXIT_UNREACHABLE)
    except SchedulerRefused as e:
        fail(str(e), EXIT_INVALID)
    except SchedulerError as e:
        fail(str(e), EXIT_FAILED)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S") if seconds else "-"


def _value(value_json: str) -> Any:
    try:
        return json.loads(value_json)
    except ValueError:
        return value_json


def export_json(export: pb.Export) -> str:
    """One export as the JSON line ``dagyo run`` prints."""
    return json.dumps(
        {"export": export.export, "value": _value(export.value_json)}, ensure_ascii=False
    )


def _as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        unquote_int64_if_possible=True,
    )


def failure_dict(report: FailureReport) -> dict[str, Any]:
    """A failure report as JSON, its kind a lowercase word (``panic``, ``lost``, …)."""
    data = _as_dict(report)
    data["kind"] = FAILURE_KINDS.get(report.kind, "unspecified")
    return data


def record_dict(record: pb.FlowRecord) -> dict[str, Any]:
    """A flow record as JSON: states as lowercase words, export values parsed."""
    data = _as_dict(record)
    data["state"] = FLOW_STATES.get(record.state, "unspecified")
    for node, raw in zip(data["nodes"], record.nodes, strict=True):
        node["state"] = NODE_STATES.get(raw.state, "unspecified")
    data["failure"] = failure_dict(record.failure) if record.HasField("failure") else None
    data["exports"] = [{"export": e.export, "value": _value(e.value_json)} for e in record.exports]
    return data


def failure_line(report: FailureReport) -> str:
    """``<flow> <node> (<progdef>) on <executor>: <error>``, one line."""
    where = f" {report.node} ({report.progdef})" if report.node else ""
    on = f" on {report.executor}" if report.executor else ""
    error = (report.error.splitlines() or [FAILURE_KINDS.get(report.kind, "failed")])[0]
    return f"{report.flow_id}{where}{on}: {error}"


# --- dagyo flow -------------------------------------------------------------------------------


@cli.group("flow")
def flow() -> None:
    """Submit flows to the scheduler and follow, inspect, list or cancel them."""


@flow.command("submit")
@click.argument("flow_file", metavar="FLOW.json", type=click.Path(path_type=Path))
@click.option(
    "--wait",
    is_flag=True,
    help="Then follow the flow as `dagyo flow watch` does (the id goes to stderr).",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Fail the flow if it runs longer than this.",
)
@scheduler_option
def submit_command(flow_file: Path, wait: bool, deadline: float | None, address: str) -> None:
    """Submit FLOW.json to the scheduler and print its flow id on stdout.

    Exits 0; with --wait as `dagyo run`: 0 succeeded, 1 failed or cancelled (the failure
    report on stderr). 2 when the scheduler refuses the flow (every problem on stderr),
    3 when it cannot be reached.
    """
    try:
        text = flow_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        fail(f"{flow_file}: cannot read the flow file: {reason}", EXIT_INVALID)
    with connected(address) as client:
        flow_id = client.submit(text, source=str(flow_file), deadline_s=deadline or 0.0)
        click.echo(flow_id, err=wait)
        if wait:
            sys.exit(_follow(client, flow_id))


@flow.command("watch")
@click.argument("flow_id", metavar="ID")
@scheduler_option
def watch_command(flow_id: str, address: str) -> None:
    """Follow flow ID live until it ends: exports to stdout as JSON lines, as `dagyo run`.

    A progress line is drawn on stderr when it is a terminal. Exits 0 when the flow
    succeeded, 1 when it failed or was cancelled (the failure report on stderr),
    2 for an unknown ID, 3 when the scheduler cannot be reached.
    """
    with connected(address) as client:
        sys.exit(_follow(client, flow_id))


def _follow(client: SchedulerClient, flow_id: str) -> int:
    latest: list[pb.FlowRecord] = []
    progress: _Progress | None = None
    end: pb.FlowRecord | None = None
    interrupted = False
    try:
        for event in client.watch(flow_id):
            kind = event.WhichOneof("kind")
            if kind == "export":
                sys.stdout.write(export_json(event.export) + "\n")
                sys.stdout.flush()
            elif kind == "progress":
                latest[:] = [event.progress]
                if progress is None and sys.stderr.isatty():
                    progress = _Progress(
                        f"{event.progress.name or 'flow'} {flow_id}",
                        lambda: {n.node: n.items_sent for n in latest[0].nodes},
                    )
            elif kind == "end":
                end = event.end
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.close()
    if interrupted:
        fail(
            f"stopped watching flow {flow_id}; it goes on (`dagyo flow cancel {flow_id}` stops it)",
            130,
        )
    if end is None:
        end = client.get(flow_id)
        if end.state in (pb.FLOW_STATE_PENDING, pb.FLOW_STATE_RUNNING):
            raise SchedulerError(
                f"the scheduler at {client.address} ended the watch of flow "
                f"{flow_id} before the flow ended"
            )
    if end.exports_truncated:
        click.echo(
            f"dagyo: flow {flow_id}: exports past the scheduler's size cap were not kept", err=True
        )
    if end.state == pb.FLOW_STATE_SUCCEEDED:
        return EXIT_OK
    if end.state == pb.FLOW_STATE_CANCELLED:
        click.echo(f"dagyo: flow {flow_id} was cancelled", err=True)
    elif end.HasField("failure"):
        print_failure(end.failure)
    else:
        click.echo(f"dagyo: flow {flow_id} failed", err=True)
    return EXIT_FAILED


@flow.command("status")
@click.argument("flow_id", metavar="ID")
@json_option
@scheduler_option
def status_command(flow_id: str, as_json: bool, address: str) -> None:
    """Show the record of flow ID: state, per-node progress, and failure.

    The state is one of pending, running, succeeded, failed, cancelled. Exits 0, or 1 when
    the flow failed; 2 for an unknown ID, 3 when the scheduler cannot be reached.
    """
    with connected(address) as client:
        record = client.get(flow_id)
    if as_json:
        click.echo(json.dumps(record_dict(record), ensure_ascii=False))
    else:
        _print_record(record)
    if record.state == pb.FLOW_STATE_FAILED:
        sys.exit(EXIT_FAILED)


def _print_record(record: pb.FlowRecord) -> None:
    click.echo(f"flow {record.id} ({record.name}): {FLOW_STATES[record.state]}")
    click.echo(f"created {_when(record.created)}, ended {_when(record.ended)}")
    rows = [("node", "progdef", "state", "executor", "items sent")] + [
        (n.node, n.progdef, NODE_STATES[n.state], n.executor or "-", str(n.items_sent))
        for n in record.nodes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4]
        )
    if record.HasField("failure"):
        f = record.failure
        where = f"node {f.node} (progdef {f.progdef})" if f.node else "the flow"
        on = f" on executor {f.executor}" if f.executor else ""
        click.echo(f"failure ({FAILURE_KINDS[f.kind]}): {where}{on}: {f.error}")
        if f.traceback:
            click.echo(f.traceback.rstrip())
    truncated = " (more were not kept: past the size cap)" if record.exports_truncated else ""
    click.echo(f"exports kept: {len(record.exports)}{truncated}")


@flow.command("list")
@json_option
@scheduler_option
def list_command(as_json: bool, address: str) -> None:
    """List the flows the scheduler knows, one a line: id, state, name, created.

    Exits 0; 3 when the scheduler cannot be reached.
    """
    with connected(address) as client:
        records = client.list()
    width = max((len(r.name) for r in records), default=0)
    for record in records:
        if as_json:
            click.echo(json.dumps(record_dict(record), ensure_ascii=False))
        else:
            click.echo(
                f"{record.id}  {FLOW_STATES[record.state]:<9}  {record.name:<{width}}  "
                f"{_when(record.created)}"
            )


@flow.command("cancel")
@click.argument("flow_id", metavar="ID")
@scheduler_option
def cancel_command(flow_id: str, address: str) -> None:
    """Cancel flow ID (every job gets stop) and print its resulting state: `ID STATE`.

    Exits 0; 2 for an unknown ID, 3 when the scheduler cannot be reached.
    """
    with connected(address) as client:
        record = client.cancel(flow_id)
    click.echo(f"{record.id or flow_id} {FLOW_STATES[record.state]}")
