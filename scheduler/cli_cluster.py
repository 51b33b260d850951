"""The cluster commands: ``dagyo scheduler``, ``dagyo up``, ``dagyo flow …``, ``dagyo failures``.

They parse arguments and call the scheduler (through scheduler.client) or the broker.
Exit status: 0 done, 1 the flow failed or was cancelled, 2 a refused request (an invalid
flow, an unknown flow id, an unreadable file), 3 the scheduler or broker is unreachable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from executor.constants import (
    DEFAULT_QUEUE_URL,
    DEFAULT_SCHEDULER_ADDRESS,
    ENV_JOBS,
    ENV_QUEUE,
    ENV_SCHEDULER,
    ENV_STATE,
    FAILURES_EXCHANGE,
)
from executor.errors import (
    BrokerUnavailable,
    DagyoError,
    SchedulerError,
    SchedulerRefused,
    SchedulerUnavailable,
)
from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from executor.pb.dagyo.v1.failure_pb2 import FailureKind, FailureReport
from executor.progdef import Progdef
from scheduler.cli import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNREACHABLE,
    _Progress,
    catalogue_of,
    cli,
    default_progdefs_dir,
    fail,
    print_failure,
    progdefs_option,
)
from scheduler.client import SchedulerClient

# `dagyo up` waits this long for every mailbox to have a consumer before it says it is up.
UP_READY_TIMEOUT_S = 60.0
# On stop, `dagyo up` gives executors their drain grace plus this, then kills them.
UP_STOP_MARGIN_S = 15.0

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


@contextlib.contextmanager
def stop_signals(
    on_signal: Callable[[int], None] = lambda count: None,
) -> Iterator[threading.Event]:
    """While open, SIGINT and SIGTERM set the yielded event (and call ``on_signal(count)``)."""
    stop = threading.Event()
    count = 0

    def handle(signum: int, frame: Any) -> None:
        nonlocal count
        count += 1
        stop.set()
        on_signal(count)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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


# --- dagyo scheduler / dagyo up -------------------------------------------------------------


def listen_option(function: Any) -> Any:
    """``--listen ADDRESS`` (env DAGYO_SCHEDULER): where the scheduler serves gRPC."""
    return click.option(
        "--listen",
        envvar=ENV_SCHEDULER,
        default=None,
        show_envvar=True,
        metavar="HOST:PORT",
        help=f"Serve the gRPC API here [default: {DEFAULT_SCHEDULER_ADDRESS}].",
    )(function)


def heartbeat_option(function: Any) -> Any:
    """``--heartbeat-timeout SECONDS``: when a silent executor's jobs are lost."""
    return click.option(
        "--heartbeat-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        metavar="SECONDS",
        help="Fail a flow whose job's executor sent no heartbeat for this long [default: 15].",
    )(function)


def scheduler_settings(**overrides: Any) -> Any:
    """SchedulerSettings.from_env() with every override that is not None.

    Exits 2 naming a setting that holds a bad value.
    """
    from scheduler.config import SchedulerSettings

    try:
        return SchedulerSettings.from_env(**{k: v for k, v in overrides.items() if v is not None})
    except DagyoError as e:
        fail(str(e), EXIT_INVALID)


@cli.command("scheduler")
@listen_option
@heartbeat_option
@click.option(
    "--state",
    metavar="PATH",
    envvar=ENV_STATE,
    default=None,
    show_envvar=True,
    help="The SQLite file of flow records, kept across restarts (`:memory:` keeps "
    "none) [default: ~/.local/state/dagyo/scheduler.sqlite3].",
)
@progdefs_option
def scheduler_command(
    listen: str | None,
    heartbeat_timeout: float | None,
    state: str | None,
    progdefs_dir: Path | None,
) -> None:
    """Run the scheduler service alone: gRPC on --listen, the broker on DAGYO_QUEUE.

    Exits 0 after SIGTERM or Ctrl-C, 3 when the broker cannot be reached.
    """
    from scheduler.service import serve

    settings = scheduler_settings(
        address=listen,
        heartbeat_timeout_s=heartbeat_timeout,
        state_path=state,
        progdefs=progdefs_dir,
    )
    with stop_signals() as stop:
        try:
            serve(settings, stop=stop)
        except BrokerUnavailable as e:
            fail(str(e), EXIT_UNREACHABLE)


def _executor_environment(progdef: Progdef, queue_url: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment[ENV_QUEUE] = queue_url
    environment[ENV_JOBS] = progdef.mailbox
    # Several executors share this host: each lets the OS pick its metrics port.
    environment["DAGYO_METRICS_PORT"] = "0"
    return environment


def _own_process_group() -> None:
    """In an executor before exec: Ctrl-C reaches only `dagyo up`, which sends SIGTERM; and
    on Linux the executor gets SIGTERM (drains) should `dagyo up` die without stopping it."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _mailbox_consumers(connection: Any, mailbox: str) -> int:
    import pika.exceptions

    channel = connection.channel()
    try:
        return int(channel.queue_declare(mailbox, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:  # 404: no executor declared it yet
        return 0
    finally:
        if channel.is_open:
            channel.close()


class _Cluster:
    """The executor processes of `dagyo up`."""

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url
        self.processes: list[tuple[Progdef, subprocess.Popen[bytes]]] = []

    def start(self, progdef: Progdef) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "executor", str(progdef.directory)]
        process = subprocess.Popen(
            command,
            env=_executor_environment(progdef, self.queue_url),
            process_group=0,
            preexec_fn=_own_process_group,
        )
        self.processes.append((progdef, process))
        return process

    def exited(self) -> list[tuple[Progdef, subprocess.Popen[bytes]]]:
        return [(p, process) for p, process in self.processes if process.poll() is not None]

    def wait_ready(self, stop: threading.Event) -> bool:
        """Wait until every mailbox has a consumer; False when an executor exited first."""
        from executor.amqp import connect

        waiting = {progdef.mailbox for progdef, _ in self.processes}
        deadline = time.monotonic() + UP_READY_TIMEOUT_S
        connection = connect(self.queue_url)
        try:
            while waiting and not stop.is_set() and not self.exited():
                waiting = {m for m in waiting if not _mailbox_consumers(connection, m)}
                if waiting and time.monotonic() > deadline:
                    click.echo(
                        f"dagyo: still no executor consuming {', '.join(sorted(waiting))}"
                        f" after {UP_READY_TIMEOUT_S:g} s; going on",
                        err=True,
                    )
                    return True
                stop.wait(0.2)
        finally:
            with contextlib.suppress(Exception):
                connection.close()
        return not self.exited()

    def terminate(self) -> None:
        """SIGTERM every live executor: the first drains it, a second stops its jobs."""
        for _, process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    def stop(self) -> bool:
        """Drain and wait for every executor (kill after its grace); True if all exited 0."""
        self.terminate()
        grace_s = max((p.drain_grace_s for p, _ in self.processes), default=0.0)
        deadline = time.monotonic() + grace_s + UP_STOP_MARGIN_S
        clean = True
        for progdef, process in self.processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                click.echo(
                    f"dagyo: executor {progdef.name} (pid {process.pid}) did not drain "
                    "in time; killing it",
                    err=True,
                )
                process.kill()
                process.wait()
            if process.returncode != 0:
                clean = False
        return clean


@cli.command("up")
@progdefs_option
@listen_option
@heartbeat_option
@click.option(
    "--executors",
    "per_progdef",
    type=click.IntRange(min=1),
    default=1,
    metavar="N",
    show_default=True,
    help="Executor processes per progdef.",
)
def up_command(
    progdefs_dir: Path | None, listen: str | None, heartbeat_timeout: float | None, per_progdef: int
) -> None:
    """Run a local cluster on DAGYO_QUEUE: one executor per catalogue progdef and the scheduler.

    Ctrl-C or SIGTERM drains every executor and stops the scheduler (press Ctrl-C again
    to stop running jobs). Exits 0 after a clean stop, 1 when an executor failed,
    3 when the broker cannot be reached.
    """
    from executor.amqp import connect

    logging.getLogger("pika").addHandler(logging.NullHandler())
    queue_url = os.environ.get(ENV_QUEUE) or DEFAULT_QUEUE_URL
    try:
        connect(queue_url).close()
    except BrokerUnavailable as e:
        fail(str(e), EXIT_UNREACHABLE)
    progdefs_dir = progdefs_dir or default_progdefs_dir()
    catalogue = catalogue_of(progdefs_dir)
    settings = scheduler_settings(
        address=listen,
        heartbeat_timeout_s=heartbeat_timeout,
        progdefs=progdefs_dir,
        queue_url=queue_url,
    )
    from scheduler.service import Scheduler

    cluster = _Cluster(queue_url)
    service = None
    code = EXIT_OK
    with stop_signals(lambda count: cluster.terminate() if count > 1 else None) as stop:
        try:
            for progdef in catalogue.values():
                for _ in range(per_progdef):
                    process = cluster.start(progdef)
                    click.echo(
                        f"executor {progdef.name}: pid {process.pid}, mailbox {progdef.mailbox}"
                    )
            if cluster.wait_ready(stop) and not stop.is_set():
                service = Scheduler(settings)
                service.start()
                click.echo(f"scheduler: listening on {service.address}")
                click.echo("dagyo: the cluster is up; Ctrl-C drains and stops it", err=True)
                while not stop.wait(0.5) and not cluster.exited():
                    if service.failed is not None:
                        raise service.failed
        except BrokerUnavailable as e:
            click.echo(f"dagyo: {e}", err=True)
            code = EXIT_UNREACHABLE
        finally:
            for progdef, process in [] if stop.is_set() else cluster.exited():
                click.echo(
                    f"dagyo: executor {progdef.name} (pid {process.pid}) exited with "
                    f"status {process.returncode}; stopping the cluster",
                    err=True,
                )
                code = code or EXIT_FAILED
            click.echo("dagyo: stopping: draining the executors…", err=True)
            if not cluster.stop():
                code = code or EXIT_FAILED
            if service is not None:
                service.stop()
    if code != EXIT_OK:
        sys.exit(code)
    click.echo("dagyo: stopped", err=True)


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


# --- dagyo failures ---------------------------------------------------------------------------


@cli.command("failures")
@click.option("--flow", "flow_id", metavar="ID", default="", help="Only the failures of this flow.")
@json_option
@click.option(
    "--follow",
    is_flag=True,
    help="Then keep printing new failures live, from the broker, until Ctrl-C.",
)
@scheduler_option
def failures_command(flow_id: str, as_json: bool, follow: bool, address: str) -> None:
    """Print the failures recorded so far, one a line: `FLOW NODE (PROGDEF) on EXECUTOR: ERROR`.

    With --follow it then prints each new failure as it is published on DAGYO_QUEUE, until
    Ctrl-C; without a reachable scheduler it says so and follows the broker alone. Exits 0;
    3 when the scheduler cannot be reached (with --follow: when the broker cannot).
    """

    def show(report: FailureReport) -> None:
        if as_json:
            click.echo(json.dumps(failure_dict(report), ensure_ascii=False))
        else:
            click.echo(failure_line(report))

    if not follow:
        with connected(address) as client:
            reports = client.failures(flow_id)
        for report in reports:
            show(report)
        return
    _follow_failures(flow_id, address, show)


def _follow_failures(flow_id: str, address: str, show: Callable[[FailureReport], None]) -> None:
    from executor.amqp import CONNECTION_ERRORS, connect

    logging.getLogger("pika").addHandler(logging.NullHandler())
    queue_url = os.environ.get(ENV_QUEUE) or DEFAULT_QUEUE_URL
    try:
        connection = connect(queue_url)
    except BrokerUnavailable as e:
        fail(str(e), EXIT_UNREACHABLE)
    shown: set[tuple[str, str, str, str]] = set()

    def key(report: FailureReport) -> tuple[str, str, str, str]:
        return (report.flow_id, report.node, report.executor, report.error)

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        try:
            report = FailureReport.FromString(body)
        except DecodeError:
            click.echo(
                f"dagyo: skipped a message on {FAILURES_EXCHANGE} that is not a "
                f"FailureReport (routing key {method.routing_key})",
                err=True,
            )
            return
        if key(report) not in shown:
            show(report)

    with stop_signals() as stop:
        try:
            channel = connection.channel()
            channel.exchange_declare(FAILURES_EXCHANGE, exchange_type="topic", durable=True)
            # Our own queue, gone with us: every watcher sees every report (docs/protocol.md).
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.queue_bind(queue, FAILURES_EXCHANGE, routing_key=flow_id or "#")
            # Bound before reading the past, so nothing falls between the two; the overlap is
            # skipped by `shown`.
            try:
                with SchedulerClient(address) as client:
                    for report in client.failures(flow_id):
                        shown.add(key(report))
                        show(report)
            except (SchedulerUnavailable, SchedulerError) as e:
                click.echo(f"dagyo: {e}", err=True)
                click.echo(
                    "dagyo: past failures are unavailable; following new ones on the broker",
                    err=True,
                )
            channel.basic_consume(queue, on_message, auto_ack=True)
            while not stop.is_set():
                connection.process_data_events(time_limit=0.25)
        except CONNECTION_ERRORS:
            fail(str(BrokerUnavailable(queue_url, "the connection was lost")), EXIT_UNREACHABLE)
        finally:
            with contextlib.suppress(Exception):
                connection.close()
