"""The cluster commands: ``dagyo scheduler`` and ``dagyo up``.

They parse arguments and call the scheduler service or scheduler.local_cluster
(``dagyo flow …`` is in scheduler.cli.flow, ``dagyo failures`` in scheduler.cli.failures).
Exit status: 0 done, 1 an executor failed, 2 a refused request (a bad setting, a malformed
catalogue), 3 the scheduler or broker is unreachable.
"""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from executor.core.constants import DEFAULT_QUEUE_URL, ENV_METRICS_ADDR, ENV_QUEUE
from executor.core.drain import stop_signals
from executor.core.errors import BrokerUnavailable, DagyoError, Unreachable
from executor.core.progdef import Progdef
from scheduler.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNREACHABLE,
    catalogue_of,
    fail,
    progdefs_option,
)
from scheduler.constants import (
    DEFAULT_SCHEDULER_ADDRESS,
    ENV_SCHEDULER,
    ENV_STATE,
    LOOPBACK_METRICS_HOST,
)
from scheduler.service.config import default_progdefs_dir

if TYPE_CHECKING:
    from scheduler.local_cluster import LocalCluster


# --- dagyo scheduler / dagyo up -------------------------------------------------------------


def listen_option(function: Any) -> Any:
    """``--listen ADDRESS`` (env DAGYO_SCHEDULER): where the scheduler serves gRPC; of
    several addresses (separated by ``,``, as clients take them) the first."""

    def first(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        from scheduler.client.addresses import scheduler_addresses

        return scheduler_addresses(value)[0] if value else value

    return click.option(
        "--listen",
        envvar=ENV_SCHEDULER,
        default=None,
        show_envvar=True,
        metavar="HOST:PORT",
        callback=first,
        help=f"Serve the gRPC API here [default: {DEFAULT_SCHEDULER_ADDRESS}; of several "
        "addresses separated by `,`, the first].",
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


def ui_option(function: Any) -> Any:
    """The shared ``--no-ui`` flag (the dashboard is on DAGYO_UI otherwise)."""
    return click.option(
        "--no-ui",
        is_flag=True,
        help="Serve no web dashboard [default: one on DAGYO_UI, 127.0.0.1:8080].",
    )(function)


def scheduler_settings(**overrides: Any) -> Any:
    """SchedulerSettings.from_env() with every override that is not None.

    Exits 2 naming a setting that holds a bad value.
    """
    from scheduler.service.config import SchedulerSettings

    try:
        return SchedulerSettings.from_env(**{k: v for k, v in overrides.items() if v is not None})
    except DagyoError as e:
        fail(str(e), EXIT_INVALID)


def state_option(function: Any) -> Any:
    """``--state PATH`` (env DAGYO_STATE): where the scheduler keeps flow records."""
    return click.option(
        "--state",
        metavar="PATH",
        envvar=ENV_STATE,
        default=None,
        show_envvar=True,
        help="Where flow records are kept across restarts: a SQLite file (`:memory:` keeps "
        "none), or a PostgreSQL URL (postgresql://USER[:PASSWORD]@HOST:5432/DATABASE); it "
        "serves one broker and vhost only [default: "
        "~/.local/state/dagyo/scheduler-HOST-PORT-VHOST.sqlite3, of DAGYO_QUEUE].",
    )(function)


# The variables a scheduler reads, for the --help of the commands that start one.
SCHEDULER_VARIABLES = """\b
Reads:
  DAGYO_QUEUE         the broker's amqp:// URL [amqp://guest:guest@localhost:5672/%2F],
                      or its nodes' URLs separated by ; (tried in order)
  DAGYO_QUEUE_TYPE    the durable queues' type: classic or quorum [quorum
                      when DAGYO_QUEUE lists several URLs, else classic]
  DAGYO_SCHEDULER     where gRPC listens (--listen; of a list separated by ,
                      the first)
  DAGYO_STATE         the flow records: a SQLite file or a postgresql:// URL
                      (--state)
  DAGYO_PROGDEFS      the catalogue folders, joined by the path separator
                      (--progdefs, repeatable)
  DAGYO_METRICS_PORT  the scheduler's /metrics and /healthz; 0 serves none
                      [9101, or a free port when 9101 is busy]
  DAGYO_METRICS_ADDR  the interface they listen on [0.0.0.0: every one;
                      127.0.0.1 under dagyo up]
  DAGYO_UI            the dashboard's host:port, or off [127.0.0.1:8080]
  DAGYO_HEARTBEAT_TIMEOUT_S, DAGYO_EXPORT_CAP_BYTES, DAGYO_REQUIRE_CONSUMERS,
  DAGYO_TOKENS, DAGYO_TLS_CERT, DAGYO_TLS_KEY, DAGYO_TLS_CLIENT_CA,
  DAGYO_MAX_MESSAGE_BYTES, DAGYO_GRPC_WORKERS, DAGYO_WATCHES_PER_CLIENT,
  DAGYO_WATCHER_EVENTS, DAGYO_LOG_FORMAT (see DEVELOPERS.md)
  OTEL_EXPORTER_OTLP_ENDPOINT  traces over OTLP (pip install 'dagyo[otel]';
                      docs/observability.md)
"""

SCHEDULER_HELP = (
    inspect.cleandoc(
        """Run the scheduler service alone: gRPC on --listen, the broker on DAGYO_QUEUE.

    Exits 0 after SIGTERM or Ctrl-C, 2 for a bad setting, catalogue or state (or a busy
    DAGYO_METRICS_PORT), 3 when the broker or a PostgreSQL state cannot be reached.
    """
    )
    + "\n\n"
    + SCHEDULER_VARIABLES
)

UP_HELP = (
    inspect.cleandoc(
        """Run a local cluster on DAGYO_QUEUE: one executor per catalogue progdef and the scheduler.

    An executor that exits, at start-up too, is reported and started again (after 1 s,
    doubling to 30 s while it keeps failing); the rest keep running. Ctrl-C or SIGTERM
    drains every executor and stops the scheduler (press Ctrl-C again to stop running
    jobs). Exits 0 after a clean stop, 1 when an executor did not drain cleanly, 2 for a
    bad setting, catalogue or state, 3 when the broker or a PostgreSQL state cannot be
    reached.

    With --schedulers N (N > 1 needs DAGYO_STATE to be a PostgreSQL URL; with a SQLite
    state it exits 2 before anything starts), N schedulers share the state and the vhost:
    the first runs in this process and serves the dashboard and the triggers, the others
    are `dagyo scheduler` processes on the next ports (--listen's port + 1, + 2…; free
    ports for port 0), each with a metrics port of its own, started again after an exit
    as an executor is, and stopped after the executors drained. Each scheduler's address
    is printed (`scheduler: listening on HOST:PORT`); give clients all of them in
    DAGYO_SCHEDULER, separated by `,`.

    A stop leaves the durable mailboxes of the progdefs that ran, the scheduler's events
    and failures queues and dagyo's exchanges in the broker, for the next `dagyo up`
    (never the mailbox of a progdef whose executor never started); with --clean, a clean
    stop deletes them all.

    Each executor gets only its own progdef's declared secrets and env, the DAGYO_*
    settings but the scheduler's credentials (DAGYO_TLS_CERT, DAGYO_TLS_KEY,
    DAGYO_TLS_CLIENT_CA, DAGYO_TOKENS) and DAGYO_TOKEN, and what a process needs (PATH,
    HOME, LANG, PYTHON*…), not the whole environment; its health port is a free one, on
    loopback.
    """
    )
    + "\n\n"
    + SCHEDULER_VARIABLES
)


@click.command("scheduler", help=SCHEDULER_HELP)
@listen_option
@heartbeat_option
@state_option
@progdefs_option
@ui_option
def scheduler_command(
    listen: str | None,
    heartbeat_timeout: float | None,
    state: str | None,
    progdefs_dir: Sequence[Path],
    no_ui: bool,
) -> None:
    from executor.core.logs import configure_logging
    from scheduler.service.server import serve

    try:
        configure_logging()
    except DagyoError as e:
        fail(str(e), EXIT_INVALID)
    settings = scheduler_settings(
        address=listen,
        heartbeat_timeout_s=heartbeat_timeout,
        state_path=state,
        progdefs=tuple(progdefs_dir) or None,
        ui_address="" if no_ui else None,
    )
    # Exits 2 naming every malformed progdef.json; the scheduler logs the ones left out.
    catalogue_of(settings.progdefs, warn=False)
    with stop_signals() as stop:
        try:
            serve(settings, stop=stop)
        except Unreachable as e:  # the broker, or a PostgreSQL state
            fail(str(e), EXIT_UNREACHABLE)
        except DagyoError as e:  # a bad state file, catalogue or listen address
            fail(str(e), EXIT_INVALID)


@click.command("up", help=UP_HELP)
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
@state_option
@ui_option
@click.option(
    "--schedulers",
    type=click.IntRange(min=1),
    default=1,
    metavar="N",
    show_default=True,
    help="Scheduler processes sharing the state, on consecutive ports from --listen's; "
    "more than 1 needs a PostgreSQL state (DAGYO_STATE). The dashboard and the triggers "
    "are served by the first.",
)
@click.option(
    "--clean",
    is_flag=True,
    help="At a clean stop, delete what the cluster declared in the broker: its mailboxes, "
    "the scheduler's queues and the exchanges.",
)
def up_command(
    progdefs_dir: Sequence[Path],
    listen: str | None,
    heartbeat_timeout: float | None,
    per_progdef: int,
    state: str | None,
    no_ui: bool,
    clean: bool,
    schedulers: int,
) -> None:
    from executor.core.amqp import connect
    from scheduler.local_schedulers import shared_state_problem

    # Before anything starts: several schedulers share one state, which SQLite cannot be.
    if problem := shared_state_problem(schedulers, state or ""):
        fail(problem, EXIT_INVALID)
    logging.getLogger("pika").addHandler(logging.NullHandler())
    queue_url = os.environ.get(ENV_QUEUE) or DEFAULT_QUEUE_URL
    try:
        connect(queue_url).close()
    except BrokerUnavailable as e:
        fail(str(e), EXIT_UNREACHABLE)
    progdefs_dir = tuple(progdefs_dir) or (default_progdefs_dir(),)
    # Exits 2 naming every malformed progdef.json, and every `run` that names no function;
    # the scheduler logs the ones left out.
    catalogue_of(progdefs_dir, warn=False, code=True)
    settings = scheduler_settings(
        address=listen,
        heartbeat_timeout_s=heartbeat_timeout,
        state_path=state,
        progdefs=progdefs_dir,
        queue_url=queue_url,
        ui_address="" if no_ui else None,
        # A local cluster is for this machine: health and metrics on loopback unless asked.
        metrics_host=None if os.environ.get(ENV_METRICS_ADDR) else LOOPBACK_METRICS_HOST,
    )
    from scheduler.local_cluster import LocalCluster

    cluster = LocalCluster.from_settings(
        settings, executors_per_progdef=per_progdef, schedulers=schedulers
    )
    code = EXIT_OK
    with stop_signals(lambda count: cluster.terminate() if count > 1 else None) as stop:
        try:
            _run_until_stopped(cluster, stop)
        except Unreachable as e:  # the broker, or a PostgreSQL state
            click.echo(f"dagyo: {e}", err=True)
            code = EXIT_UNREACHABLE
        except DagyoError as e:  # the scheduler's state file or address
            click.echo(f"dagyo: {e}", err=True)
            code = EXIT_INVALID
        finally:
            click.echo("dagyo: stopping: draining the executors…", err=True)
            if not cluster.stop(on_kill=_say_killed, clean=clean and code == EXIT_OK):
                code = code or EXIT_FAILED
    if code != EXIT_OK:
        sys.exit(code)
    click.echo("dagyo: stopped", err=True)


def _run_until_stopped(cluster: LocalCluster, stop: threading.Event) -> None:
    """Start the cluster step by step, saying so, and run it until ``stop`` or an exit."""
    from scheduler.local_cluster import READY_TIMEOUT_S

    for progdef in cluster.catalogue.values():
        for _ in range(cluster.executors_per_progdef):
            _say_started(progdef, cluster.start_executor(progdef))
    waiting = cluster.wait_ready(stop=stop)
    if stop.is_set():
        return
    if waiting:
        click.echo(
            f"dagyo: still no executor consuming {', '.join(waiting)}"
            f" after {READY_TIMEOUT_S:g} s; going on",
            err=True,
        )
    # Those that failed at start-up are reported and started again, like later exits.
    cluster.supervise(on_exit=_say_exited, on_start=_say_started)
    service = cluster.start_scheduler()
    others = cluster.scheduler_processes
    click.echo(f"scheduler: listening on {service.address}")
    for address, process in others.listening():
        _say_scheduler_started(address, process)
    if service.dashboard is not None:
        click.echo(f"dashboard: {service.dashboard.url}")
    silent = others.wait_serving(timeout_s=READY_TIMEOUT_S, stop=stop)
    if silent and not stop.is_set():
        click.echo(
            f"dagyo: scheduler {', '.join(silent)} not serving after {READY_TIMEOUT_S:g} s; "
            "going on",
            err=True,
        )
    click.echo("dagyo: the cluster is up; Ctrl-C drains and stops it", err=True)
    while not stop.wait(0.5):
        if service.failed is not None:
            raise service.failed
        cluster.supervise(on_exit=_say_exited, on_start=_say_started)
        others.supervise(on_exit=_say_scheduler_exited, on_start=_say_scheduler_started)


def _say_exited(progdef: Progdef, process: subprocess.Popen[bytes], delay_s: float) -> None:
    click.echo(
        f"dagyo: executor {progdef.name} (pid {process.pid}) exited with status "
        f"{process.returncode}; starting it again in {delay_s:g} s",
        err=True,
    )


def _say_scheduler_exited(address: str, process: subprocess.Popen[bytes], delay_s: float) -> None:
    click.echo(
        f"dagyo: scheduler {address} (pid {process.pid}) exited with status "
        f"{process.returncode}; starting it again in {delay_s:g} s",
        err=True,
    )


def _say_scheduler_started(address: str, process: subprocess.Popen[bytes]) -> None:
    click.echo(f"scheduler: listening on {address} (pid {process.pid})")


def _say_started(progdef: Progdef, process: subprocess.Popen[bytes]) -> None:
    click.echo(f"executor {progdef.name}: pid {process.pid}, mailbox {progdef.mailbox}")


def _say_killed(progdef: Progdef, process: subprocess.Popen[bytes]) -> None:
    click.echo(
        f"dagyo: executor {progdef.name} (pid {process.pid}) did not drain in time; killing it",
        err=True,
    )
