"""What commands print: export lines, failure reports, records as JSON, the progress line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from executor import errorport
from executor.pb.dagyo.v1.failure_pb2 import FailureKind, FailureReport
from scheduler.client.records import (  # noqa: F401 - the CLI's JSON forms, re-exported
    FAILURE_KINDS,
    FLOW_STATES,
    NODE_STATES,
    export_value,
    failure_dict,
    record_dict,
)
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

if TYPE_CHECKING:
    from rich.text import Text

# The executor name of a failure the scheduler decided itself (deadline, cancel, broker).
SCHEDULER = "scheduler"


def export_line(name: str, message: Any) -> str:
    """One exported item (a protobuf message) as the JSON line every command prints."""
    value = errorport.to_dict(message)  # an Error's item as JSON, not base64
    return json.dumps({"export": name, "value": value}, ensure_ascii=False)


def output_line(port: str, message: Any) -> str:
    """One output item of ``dagyo invoke --local`` (a protobuf message) as its JSON line."""
    return json.dumps({"output": port, "value": errorport.to_dict(message)}, ensure_ascii=False)


def output_json(output: pb.Export) -> str:
    """One output item streamed by the gRPC Invoke as the JSON line ``dagyo invoke`` prints."""
    return json.dumps(
        {"output": output.export, "value": export_value(output.value_json)}, ensure_ascii=False
    )


def export_json(export: pb.Export) -> str:
    """One export of a flow record as the JSON line ``dagyo run`` prints."""
    return json.dumps(
        {"export": export.export, "value": export_value(export.value_json)}, ensure_ascii=False
    )


def when(seconds: float) -> str:
    """A timestamp as local ``YYYY-MM-DD HH:MM:SS``, or ``-`` when unset."""
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S") if seconds else "-"


def failure_where(report: FailureReport) -> str:
    """The one sentence naming a failure: ``node N (progdef P) on executor E: error``, or
    for the flow as a whole who ended it and why."""
    on = f" on executor {report.executor}" if report.executor not in ("", SCHEDULER) else ""
    if report.node:
        return f"node {report.node} (progdef {report.progdef}){on}: {report.error}"
    if report.kind == FailureKind.FAILURE_KIND_CANCELLED:
        error = report.error
        return f"the flow was {error}" if error.startswith("cancelled") else f"cancelled: {error}"
    if on:
        return f"executor {report.executor} ended the flow: {report.error}"
    return f"the scheduler ended the flow: {report.error}"


def print_failure(report: FailureReport) -> None:
    """The failure report on stderr: node, progdef, executor, error, then the traceback."""
    click.echo(f"dagyo: flow failed: {failure_where(report)}", err=True)
    if report.traceback:
        click.echo(report.traceback.rstrip(), err=True)


def failure_line(report: FailureReport) -> str:
    """``<flow> <node> (<progdef>) on <executor>: <error>``, one line."""
    where = f" {report.node} ({report.progdef})" if report.node else ""
    on = f" on {report.executor}" if report.executor not in ("", SCHEDULER) else ""
    error = (report.error.splitlines() or [FAILURE_KINDS.get(report.kind, "failed")])[0]
    return f"{report.flow_id}{where}{on}: {error}"


def items_of(node: pb.NodeProgress) -> str:
    """A node's items sent, and of them those sent to its error port: ``5 (2 errors)``."""
    errors = node.errors_sent
    return (
        f"{node.items_sent} ({errors} error{'' if errors == 1 else 's'})"
        if errors
        else str(node.items_sent)
    )


def sinks_of(flow_json: str) -> set[str]:
    """The nodes of a flow that send nothing (no edge and no export starts at them)."""
    try:
        flow = json.loads(flow_json)
        nodes = set(flow.get("nodes", {}))
        feeding = {str(e.get("from", "")).split(".")[0] for e in flow.get("edges", [])}
        feeding |= {str(source).split(".")[0] for source in flow.get("exports", {}).values()}
    except (ValueError, AttributeError, TypeError):
        return set()
    return nodes - feeding


def progress_counts(record: pb.FlowRecord, sinks: set[str]) -> dict[str, str]:
    """What the progress line shows per node: the items it sent, and for a sink (which
    sends nothing) the items it received: how far the flow got; a cached node (not run, its
    streams replayed) says so."""
    return {
        n.node: f"{n.items_sent} cached"
        if n.state == pb.NODE_STATE_CACHED
        else f"{n.items_received} received"
        if n.node in sinks
        else items_of(n)
        for n in record.nodes
    }


def print_record(record: pb.FlowRecord) -> None:
    """A flow record as text: state, times, a table of nodes and one of edges (items and
    queue depth), the failure, the exports kept."""
    waiting = f" ({record.waiting})" if record.waiting else ""
    click.echo(f"flow {record.id} ({record.name}): {FLOW_STATES[record.state]}{waiting}")
    click.echo(f"created {when(record.created)}, ended {when(record.ended)}")
    # The version says which build of the progdef ran the node.
    header = ("node", "progdef", "version", "state", "executor", "items received", "items sent")
    _print_table(
        [header]
        + [
            (
                n.node,
                n.progdef,
                n.version or "-",
                NODE_STATES[n.state],
                n.executor or "-",
                str(n.items_received),
                items_of(n),
            )
            for n in record.nodes
        ]
    )
    if record.edges:
        # The depth is the frames waiting in the edge's stream queue when last sampled.
        _print_table(
            [("edge", "items sent", "items received", "queue depth")]
            + [
                (
                    f"{e.source} -> {e.target}",
                    str(e.items_sent),
                    str(e.items_received),
                    str(e.queue_depth) if e.sampled else "-",
                )
                for e in record.edges
            ]
        )
    if record.HasField("failure"):
        f = record.failure
        click.echo(f"failure ({FAILURE_KINDS[f.kind]}): {failure_where(f)}")
        if f.traceback:
            click.echo(f.traceback.rstrip())
    truncated = (
        f" ({record.exports_dropped or 'more'} not kept: past the size cap)"
        if record.exports_truncated
        else ""
    )
    click.echo(f"exports kept: {len(record.exports)}{truncated}")


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    """Rows in columns two spaces apart, the last one not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )


class Progress:
    """A progress line on stderr (a terminal), redrawn a few times a second (rich ``Live``).

    When stdout is the same terminal, print export lines with :meth:`export`: the line is
    lifted off, the export printed whole on a line of its own, and the line redrawn below.
    A terminal that reports no size (a bare pty) is taken as 80 columns wide.

    Args:
        name: what the line starts with (the flow's name).
        read: returns the counts to show, node name to items.
    """

    def __init__(self, name: str, read: Callable[[], Mapping[str, object]]) -> None:
        # Imported here, for a terminal only: rich is a good part of a command's start-up.
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self._text = Text
        self._name = name
        self._read = read
        try:
            columns = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            columns = 0
        self._console = Console(
            file=sys.stderr, force_terminal=True, width=columns or 80, highlight=False
        )
        self._shared = _same_terminal(sys.stdout, sys.stderr)
        self._live = Live(
            console=self._console,
            get_renderable=self._line,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        self._closed = False

    def _line(self) -> Text:
        counts = " · ".join(f"{k} {v}" for k, v in self._read().items())
        return self._text(f"{self._name}: {counts}", no_wrap=True, overflow="ellipsis")

    def export(self, line: str) -> None:
        """Print one export line on stdout, above the progress line when they share a terminal."""
        if self._shared and not self._closed:
            self._console.print(self._text(line), soft_wrap=True)
        else:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        """Stop redrawing and clear the line (again: nothing)."""
        if not self._closed:
            self._closed = True
            self._live.stop()


def _same_terminal(out: Any, err: Any) -> bool:
    """Whether two streams are one terminal (``dagyo run`` with nothing redirected)."""
    try:
        return bool(
            out.isatty() and os.path.samestat(os.fstat(out.fileno()), os.fstat(err.fileno()))
        )
    except (OSError, ValueError, AttributeError):  # closed, or not a file
        return False
