"""Commands that need no broker: ``validate``, ``run``, ``progdefs``, ``types``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from executor.errors import DagyoError
from scheduler.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    catalogue_of,
    checked_flow,
    connected,
    fail,
    progdefs_option,
    scheduler_option,
    set_option,
)
from scheduler.cli.output import Progress, export_line, print_failure

if TYPE_CHECKING:
    from scheduler.flow.model import CheckedFlow


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
@set_option
@progdefs_option
def run(flow: Path, graph: str | None, sets: tuple[str, ...], progdefs_dir: Path | None) -> None:
    """Run FLOW in this process (no broker); exported items to stdout as JSON lines.

    Exits 0 when the flow succeeded, 1 when it failed (the failure report on stderr),
    2 when it is invalid.
    """
    checked = checked_flow(flow, catalogue_of(progdefs_dir), sets)
    if graph:
        from scheduler.flow.render import render_graph

        click.echo(render_graph(checked, graph), nl=False)
        return
    run_embedded(checked, export_line)


def run_embedded(checked: CheckedFlow, line: Callable[[str, Any], str]) -> None:
    """Run a checked flow in this process, printing ``line(export, item)`` for each export;
    exit 1 (the failure report on stderr) when it fails, 2 when a progdef cannot start."""
    from executor.stream import tune_gc
    from scheduler.embedded import EmbeddedRunner

    out = sys.stdout
    progress: Progress | None = None

    def on_export(name: str, message: Any) -> None:
        if progress is not None:
            progress.export(line(name, message))
        else:
            out.write(line(name, message) + "\n")

    runner = EmbeddedRunner(checked, on_export=on_export)
    tune_gc()  # this process is the flow's now
    if sys.stderr.isatty():
        progress = Progress(checked.flow.name, runner.progress)
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
@click.option(
    "--versions",
    is_flag=True,
    help="Ask the scheduler for each version: current, draining or retired, with its jobs.",
)
@scheduler_option
def progdefs_command(progdefs_dir: Path | None, versions: bool, address: str) -> None:
    """List the catalogue: each progdef with its port types; with --versions, each
    version the scheduler knows (state, jobs waiting, jobs running)."""
    if versions:
        with connected(address) as client:
            rows = [("progdef", "version", "state", "waiting", "running")] + [
                (v.progdef, v.version, v.state, str(v.waiting), str(v.running))
                for v in client.versions()
            ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return
    catalogue = catalogue_of(progdefs_dir, warn=False)
    for progdef in catalogue.values():
        inputs = ", ".join(f"{p}: {t}" for p, t in progdef.inputs.items())
        outputs = ", ".join(f"{p}: {t}" for p, t in progdef.outputs.items())
        click.echo(f"{progdef.name}  ({inputs}) -> ({outputs})")
        if progdef.description:
            click.echo(f"    {progdef.description}")
    for left in catalogue.left_out.values():
        for problem in left.problems:
            click.echo(f"{left.name}  left out: {problem}")
        click.echo('    fix its .proto files, or take them out of "protos"')


@click.command("types")
@click.argument("name", metavar="[NAME]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object a line).")
@click.option("--schema", is_flag=True, help="Print the JSON Schema of NAME's JSON form.")
@progdefs_option
def types_command(name: str | None, as_json: bool, schema: bool, progdefs_dir: Path | None) -> None:
    """List every type of the catalogue (built in, well-known, custom) with its fields and
    docs; with NAME, that one type. --schema prints the JSON Schema of NAME's JSON form.

    Exits 0; 2 for an unknown NAME (with a did-you-mean).
    """
    import json

    from executor.errors import UnknownType
    from executor.types import unknown_typename
    from scheduler.flow.typedocs import catalogue_typenames, describe_type, json_schema

    catalogue = catalogue_of(progdefs_dir)
    if schema and not name:
        fail("--schema needs a NAME: `dagyo types dagyo.types.Text --schema`", EXIT_INVALID)
    try:
        if schema:
            click.echo(json.dumps(json_schema(str(name)), indent=2))
            return
        names = [name] if name else catalogue_typenames(catalogue)
        for typename in names:
            info = describe_type(typename, catalogue)
            if as_json:
                click.echo(json.dumps(info, ensure_ascii=False))
                continue
            fields = ", ".join(f"{f['name']}: {f['type']}" for f in info["fields"])
            click.echo(f"{typename}  {{{fields}}}")
            if info["doc"]:
                click.echo(f"    {info['doc']}")
            if info["source"] and "built in" not in info["source"]:
                click.echo(f"    defined in {info['source']}")
            if name:
                for field in info["fields"]:
                    doc = f"  {field['doc']}" if field["doc"] else ""
                    click.echo(f"    {field['name']}: {field['type']}{doc}")
    except UnknownType:
        fail(unknown_typename(str(name)), EXIT_INVALID)
