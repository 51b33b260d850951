"""``dagyo flow …``: submit flows to the scheduler and follow, inspect, list or cancel them.

Exit status: 0 done, 1 the flow failed or was cancelled, 2 a refused request (an invalid
flow, an unknown flow id, an unreadable file), 3 the scheduler is unreachable, 5 the flow
succeeded but exports past the scheduler's cap were dropped before this watch saw them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from executor.core.errors import FlowInvalid, SchedulerError
from scheduler.cli.common import (
    EXIT_EXPORTS_DROPPED,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    connected,
    fail,
    flow_text,
    json_option,
    scheduler_option,
    set_option,
    utf8_arguments,
)
from scheduler.cli.downloads import write_items
from scheduler.cli.output import (
    FLOW_STATES,
    Progress,
    export_json,
    print_failure,
    print_record,
    progress_counts,
    record_dict,
    sinks_of,
    when,
)
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb


def _finite_deadline(value: float | None) -> float | None:
    """Refuse NaN and infinity, which click's range lets through and would mean no deadline."""
    if value is not None and not value < float("inf"):  # NaN compares false to all
        raise click.BadParameter(f"{value} is not a number of seconds: give one, e.g. 3600")
    return value


# --- dagyo flow -------------------------------------------------------------------------------


@click.group("flow")
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
    callback=lambda _ctx, _param, value: _finite_deadline(value),
    default=None,
    metavar="SECONDS",
    help="Fail the flow if it runs longer than this many seconds (a finite number). The "
    "scheduler checks deadlines every 0.25 s, so the flow ends within a second of it.",
)
@click.option(
    "--no-cache",
    "no_cache",
    is_flag=True,
    help="Run every node, none replayed from the scheduler's cache; the results of the "
    "deterministic ones refresh it when the flow succeeds (docs/cache.md).",
)
@set_option
@scheduler_option
def submit_command(
    flow_file: Path,
    wait: bool,
    deadline: float | None,
    no_cache: bool,
    sets: tuple[str, ...],
    address: str,
) -> None:
    """Submit FLOW.json to the scheduler and print its flow id on stdout.

    Exits 0; with --wait as `dagyo run`: 0 succeeded, 1 failed or cancelled (the failure
    report on stderr), 5 succeeded but exports past the scheduler's cap were dropped
    before the watch saw them (how many on stderr). 2 when the scheduler refuses the flow
    (every problem on stderr), 3 when it cannot be reached.
    """
    try:
        text = flow_text(flow_file)
    except FlowInvalid as e:
        fail(str(e), EXIT_INVALID)
    utf8_arguments("--set", sets)
    with connected(address) as client:
        flow_id = client.submit(
            text, source=str(flow_file), deadline_s=deadline or 0.0, sets=sets, no_cache=no_cache
        )
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
    2 for an unknown ID, 3 when the scheduler cannot be reached, 5 when it succeeded but
    exports past the scheduler's cap (DAGYO_EXPORT_CAP_BYTES) were dropped before this
    watch saw them (how many on stderr).
    """
    with connected(address) as client:
        sys.exit(_follow(client, flow_id))


def _follow(client: SchedulerClient, flow_id: str) -> int:
    latest: list[pb.FlowRecord] = []
    sinks: set[str] = set()
    progress: Progress | None = None
    end: pb.FlowRecord | None = None
    interrupted = False
    seen = 0
    try:
        for event in client.watch(flow_id):
            kind = event.WhichOneof("kind")
            if kind == "export":
                seen += 1
                if progress is not None:  # one terminal: the export goes above the line
                    progress.export(export_json(event.export))
                else:
                    sys.stdout.write(export_json(event.export) + "\n")
                    sys.stdout.flush()
            elif kind == "progress":
                latest[:] = [event.progress]
                if progress is None and sys.stderr.isatty():
                    sinks.update(sinks_of(client.get(flow_id).flow_json))
                    progress = Progress(
                        f"{event.progress.name or 'flow'} {flow_id}",
                        lambda: progress_counts(latest[0], sinks),
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
    return end_status(client, flow_id, end, seen)


def end_status(client: SchedulerClient, flow_id: str, end: pb.FlowRecord | None, seen: int) -> int:
    """The exit status of a followed flow that ended (``end``; None: ask for the record),
    after saying on stderr how it failed and what it dropped; ``seen`` exports were printed.

    Raises:
        SchedulerError: the flow had not ended.
    """
    if end is None:
        end = client.get(flow_id)
        if end.state in (pb.FLOW_STATE_PENDING, pb.FLOW_STATE_RUNNING):
            raise SchedulerError(
                f"the scheduler at {client.address} ended the watch of flow "
                f"{flow_id} before the flow ended"
            )
    missed = _missed(client, end, seen)
    if missed:
        click.echo(
            f"dagyo: flow {flow_id}: {missed} exports past the scheduler's size cap "
            "(DAGYO_EXPORT_CAP_BYTES) were dropped before this watch saw them",
            err=True,
        )
    if end.state == pb.FLOW_STATE_SUCCEEDED:
        return EXIT_EXPORTS_DROPPED if missed else EXIT_OK
    if end.state == pb.FLOW_STATE_CANCELLED:
        click.echo(f"dagyo: flow {flow_id} was cancelled", err=True)
    elif end.HasField("failure"):
        print_failure(end.failure)
    else:
        click.echo(f"dagyo: flow {flow_id} failed", err=True)
    return EXIT_FAILED


def _missed(client: SchedulerClient, end: pb.FlowRecord, seen: int) -> int | str:
    """How many of the flow's exports this watch did not get ("some" when not counted)."""
    if not end.exports_truncated:
        return 0
    if not end.exports_dropped:  # a record of a scheduler that did not count them
        return "some"
    kept = len(client.get(end.id).exports)  # the end event carries no exports
    return max(0, kept + end.exports_dropped - seen)


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
        print_record(record)
    if record.state == pb.FLOW_STATE_FAILED:
        sys.exit(EXIT_FAILED)


@flow.command("list")
@json_option
@scheduler_option
def list_command(as_json: bool, address: str) -> None:
    """List the flows the scheduler knows, one a line: id, state, name, created.

    With tokens on, an admin sees every tenant's flows and a tenant column after the
    state; a user sees its own tenant's flows only. Exits 0; 3 when the scheduler cannot
    be reached.
    """
    with connected(address) as client:
        listing = client.listing()
    records = listing.records
    width = max((len(r.name) for r in records), default=0)
    tenants = listing.every_tenant and any(r.tenant for r in records)
    tenant_width = max((len(r.tenant) for r in records), default=0)
    for record in records:
        if as_json:
            click.echo(json.dumps(record_dict(record), ensure_ascii=False))
        else:
            tenant = f"{record.tenant or '-':<{tenant_width}}  " if tenants else ""
            click.echo(
                f"{record.id}  {FLOW_STATES[record.state]:<9}  {tenant}{record.name:<{width}}  "
                f"{when(record.created)}"
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


@flow.command("export")
@click.argument("flow_id", metavar="ID")
@click.argument("export", metavar="NAME")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The folder to write the items to (made when missing).",
)
@scheduler_option
def export_command(flow_id: str, export: str, out: Path, address: str) -> None:
    """Download the items kept with export NAME of flow ID, offloaded ones included.

    Each item is written to OUT/NAME-N.binpb (N: 0, 1, … in the export's order) as its
    serialized protobuf bytes, and checked against its SHA-256; one JSON line per item on
    stdout: {"export", "item", "file", "typename", "size", "sha256"}.

    Exits 0; 1 when an item does not match its SHA-256; 2 for an unknown ID or NAME, 3
    when the scheduler cannot be reached.
    """
    out.mkdir(parents=True, exist_ok=True)
    with connected(address) as client:
        status = write_items(client.export_items(flow_id, export), export, out)
    sys.exit(status)
