"""Commands that need no broker: ``validate``, ``run``, ``progdefs``, ``types``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from executor.errors import DagyoError
from scheduler.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    catalogue_of,
    checked_flow,
    fail,
    progdefs_option,
)
from scheduler.cli.output import Progress, export_line, print_failure


@click.command()
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


@click.command()
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
        from scheduler.flow.render import render_graph

        click.echo(render_graph(checked, graph), nl=False)
        return
    from executor.stream import tune_gc
    from scheduler.embedded import EmbeddedRunner

    out = sys.stdout

    def on_export(name: str, message: Any) -> None:
        out.write(export_line(name, message) + "\n")

    runner = EmbeddedRunner(checked, on_export=on_export)
    tune_gc()  # this process is the flow's now
    progress = Progress(checked.flow.name, runner.progress) if sys.stderr.isatty() else None
    try:
        result = runner.run()
    except DagyoError as e:  # a progdef's init failed: a start-up error, like an executor's
        if progress is not None:
            progress.close()
            progress = None
        fail(str(e), EXIT_INVALID)
    finally:
        if progress is not None:
            progress.close()
        out.flush()
    if result.failure is not None:
        print_failure(result.failure)
        sys.exit(EXIT_FAILED)


@click.command("progdefs")
@progdefs_option
def progdefs_command(progdefs_dir: Path | None) -> None:
    """List the catalogue: each progdef with its port types."""
    for progdef in catalogue_of(progdefs_dir).values():
        inputs = ", ".join(f"{p}: {t}" for p, t in progdef.inputs.items())
        outputs = ", ".join(f"{p}: {t}" for p, t in progdef.outputs.items())
        click.echo(f"{progdef.name}  ({inputs}) -> ({outputs})")
        if progdef.description:
            click.echo(f"    {progdef.description}")


@click.command("types")
def types_command() -> None:
    """List the standard stream types and their fields."""
    from executor.types import STANDARD_TYPES, describe

    for typename in STANDARD_TYPES:
        click.echo(f"{typename}  {{{describe(typename)}}}")
