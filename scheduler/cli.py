"""The `dagyo` command line. It parses arguments and calls; the work lives elsewhere."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import click
from google.protobuf import json_format

from executor.constants import ENV_PROGDEFS
from executor.errors import (
    BrokerUnavailable,
    DagyoError,
    FlowInvalid,
    ProgdefInvalid,
    SchedulerUnavailable,
)
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from executor.progdef import Progdef, load_catalogue
from executor.types import STANDARD_TYPES, describe
from scheduler.config import default_progdefs_dir

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNREACHABLE = 3


def progdefs_option(function: Any) -> Any:
    """The shared ``--progdefs DIR`` option (env DAGYO_PROGDEFS)."""
    return click.option(
        "--progdefs",
        "progdefs_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=ENV_PROGDEFS,
        default=None,
        show_envvar=True,
        help="Folder of progdef folders [default: ./progdefs, else the sample catalogue].",
    )(function)


def fail(message: str, code: int) -> NoReturn:
    """Print ``dagyo: message`` (every line) on stderr and exit with code."""
    for line in message.splitlines() or [""]:
        click.echo(f"dagyo: {line}" if line else "", err=True)
    sys.exit(code)


def catalogue_of(progdefs_dir: Path | None) -> dict[str, Progdef]:
    """Load the catalogue, or exit 2 naming every malformed progdef.json."""
    try:
        return load_catalogue(progdefs_dir or default_progdefs_dir())
    except ProgdefInvalid as e:
        fail(str(e), EXIT_INVALID)


def checked_flow(path: Path, catalogue: dict[str, Progdef]) -> Any:
    """Load and check a flow file, or exit 2 with every problem, one a line."""
    from scheduler.flow import check_flow, load_flow

    try:
        return check_flow(load_flow(path), catalogue, source=str(path))
    except FlowInvalid as e:
        fail(str(e), EXIT_INVALID)


def export_line(name: str, message: Any) -> str:
    """One exported item as the JSON line every command prints."""
    value = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return json.dumps({"export": name, "value": value}, ensure_ascii=False)


def print_failure(failure: FailureReport) -> None:
    """The failure report on stderr: node, progdef, executor, error, then the traceback."""
    where = f"node {failure.node} (progdef {failure.progdef})" if failure.node else "the flow"
    executor = f" on executor {failure.executor}" if failure.executor else ""
    click.echo(f"dagyo: flow failed: {where}{executor}: {failure.error}", err=True)
    if failure.traceback:
        click.echo(failure.traceback.rstrip(), err=True)


class _LazyGroup(click.Group):
    """A group whose heavy commands are imported only when they run (or --help lists them).

    ``dagyo deploy`` needs the kubernetes client, which takes half a second to import;
    ``dagyo run`` should not pay for it.
    """

    LAZY = {"build": "scheduler.cli_deploy:build", "deploy": "scheduler.cli_deploy:deploy"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            import importlib

            module, _, attribute = self.LAZY[name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dagyo")
def cli() -> None:
    """dagyo: run typed data-flow graphs of vetted programs (progdefs).

    \b
    Start here:
      dagyo run examples/hello.json       run a flow in this process, no broker
      dagyo validate FLOW.json            type-check a flow against the catalogue
      dagyo progdefs                      the catalogue and its port types
    """


@cli.command()
@click.argument("flow", type=click.Path(dir_okay=False, path_type=Path))
@progdefs_option
def validate(flow: Path, progdefs_dir: Path | None) -> None:
    """Type-check FLOW against the catalogue; every problem on stderr, one a line.

    Exits 0 when the flow is valid, 2 when it is not.
    """
    checked = checked_flow(flow, catalogue_of(progdefs_dir))
    n = len(checked.flow.nodes)
    click.echo(
        f"{flow}: valid ({n} node{'s' if n != 1 else ''}, {len(checked.flow.edges)} edges)",
        err=True,
    )


@cli.command()
@click.argument("flow", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--graph",
    type=click.Choice(["mermaid", "dot"]),
    default=None,
    help="Print the flow as a Mermaid or Graphviz DOT graph instead of running it.",
)
@progdefs_option
def run(flow: Path, graph: str | None, progdefs_dir: Path | None) -> None:
    """Run FLOW in this process (no broker); exported items to stdout as JSON lines.

    Exits 0 when the flow succeeded, 1 when it failed (the failure report on stderr),
    2 when it is invalid.
    """
    checked = checked_flow(flow, catalogue_of(progdefs_dir))
    if graph:
        from scheduler.graph import render_graph

        click.echo(render_graph(checked, graph), nl=False)
        return
    from executor.stream import tune_gc
    from scheduler.embedded import EmbeddedRunner

    out = sys.stdout

    def on_export(name: str, message: Any) -> None:
        out.write(export_line(name, message) + "\n")

    runner = EmbeddedRunner(checked, on_export=on_export)
    tune_gc()  # this process is the flow's now
    progress = _Progress(checked.flow.name, runner.progress) if sys.stderr.isatty() else None
    try:
        result = runner.run()
    finally:
        if progress is not None:
            progress.close()
        out.flush()
    if result.failure is not None:
        print_failure(result.failure)
        sys.exit(EXIT_FAILED)


class _Progress:
    """A progress line on stderr (a terminal), redrawn a few times a second."""

    def __init__(self, name: str, read: Any) -> None:
        self._name = name
        self._read = read
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(0.25):
            counts = " · ".join(f"{k} {v}" for k, v in self._read().items())
            try:
                width = max(20, os.get_terminal_size(sys.stderr.fileno()).columns - 1)
            except OSError:  # no longer a terminal
                return
            sys.stderr.write(f"\r{self._name}: {counts}"[:width].ljust(width))
            sys.stderr.flush()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


@cli.command("progdefs")
@progdefs_option
def progdefs_command(progdefs_dir: Path | None) -> None:
    """List the catalogue: each progdef with its port types."""
    for progdef in catalogue_of(progdefs_dir).values():
        inputs = ", ".join(f"{p}: {t}" for p, t in progdef.inputs.items())
        outputs = ", ".join(f"{p}: {t}" for p, t in progdef.outputs.items())
        click.echo(f"{progdef.name}  ({inputs}) -> ({outputs})")
        if progdef.description:
            click.echo(f"    {progdef.description}")


@cli.command("types")
def types_command() -> None:
    """List the standard stream types and their fields."""
    for typename in STANDARD_TYPES:
        click.echo(f"{typename}  {{{describe(typename)}}}")


def main() -> None:
    """Entry point of the `dagyo` console script."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_INVALID)
    except click.exceptions.Abort:
        click.echo("dagyo: interrupted", err=True)
        sys.exit(130)
    except (BrokerUnavailable, SchedulerUnavailable) as e:
        fail(str(e), EXIT_UNREACHABLE)
    except DagyoError as e:
        fail(str(e), EXIT_FAILED)


# Registers `dagyo scheduler`, `up`, `failures` and `flow …` on `cli`; last, because those
# modules use the helpers above.
import scheduler.cli_cluster  # noqa: E402, F401
import scheduler.cli_flow  # noqa: E402, F401
