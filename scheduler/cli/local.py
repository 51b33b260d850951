"""Commands that need no broker: ``validate``, ``run``, ``progdefs``, ``types``."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from executor.core.errors import DagyoError
from executor.core.progdef import did_you_mean
from scheduler.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    catalogue_of,
    checked_flow,
    code_of,
    connected,
    fail,
    progdefs_option,
    scheduler_option,
    set_option,
)
from scheduler.cli.output import Progress, export_line, print_failure
from scheduler.flow.render import FORMATS

if TYPE_CHECKING:
    from scheduler.flow.model import CheckedFlow


@click.command()
@click.argument("flow", type=click.Path(dir_okay=False, path_type=Path))
@progdefs_option
def validate(flow: Path, progdefs_dir: Sequence[Path]) -> None:
    """Type-check FLOW against the catalogue; every problem on stderr, one a line.

    The code of each progdef it uses is imported (where it is there), and must name its
    `run` and `init` functions.

    Exits 0 when the flow is valid, 2 when it is not.
    """
    checked = checked_flow(flow, catalogue_of(progdefs_dir))
    # The code of the progdefs it uses imports and names its functions.
    code_of({progdef.name: progdef for progdef in checked.progdefs.values()})
    nodes, edges = len(checked.flow.nodes), len(checked.flow.edges)
    click.echo(
        f"{flow}: valid ({nodes} node{'s' if nodes != 1 else ''}, "
        f"{edges} edge{'s' if edges != 1 else ''})",
        err=True,
    )


@click.command()
@click.argument("flow", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--graph",
    type=click.Choice(FORMATS),
    default=None,
    help="Print the flow as a Mermaid or Graphviz DOT graph instead of running it.",
)
@click.option(
    "--no-cache",
    "no_cache",
    is_flag=True,
    help="Run every node, even those with cached results; refresh the cache on success.",
)
@set_option
@progdefs_option
def run(
    flow: Path,
    graph: str | None,
    no_cache: bool,
    sets: tuple[str, ...],
    progdefs_dir: Sequence[Path],
) -> None:
    """Run FLOW in this process (no broker); exported items to stdout as JSON lines.

    The results of deterministic nodes are cached in DAGYO_CACHE_DIR (default
    ~/.cache/dagyo/cache) and replayed, not run, when the same nodes meet the same inputs
    again (docs/cache.md); --no-cache runs everything.

    Jobs share the items they send and receive (never change one once sent):
    DAGYO_EMBEDDED_SERIALIZE=1 serializes every item as a cluster does and fails the
    flow when one was changed after it was sent.

    Ctrl-C or SIGTERM stops every job and ends the flow as cancelled, its offloaded items
    deleted. Exits 0 when the flow succeeded, 1 when it failed (the failure report on
    stderr), 2 when it is invalid.
    """
    checked = checked_flow(flow, catalogue_of(progdefs_dir), sets)
    if graph:
        from scheduler.flow.render import render_graph

        click.echo(render_graph(checked, graph), nl=False)
        return
    refuse_node(checked)
    code_of({progdef.name: progdef for progdef in checked.progdefs.values()})
    run_embedded(checked, export_line, cache=True, refresh=no_cache)


def refuse_node(checked: CheckedFlow) -> None:
    """Exit 2 in one line for a flow with a node progdef: one Python process cannot run it."""
    node = sorted({p.name for p in checked.progdefs.values() if p.runtime == "node"})
    if node:
        fail(
            f"progdef {', '.join(node)} runs on Node.js, which `dagyo run` (one Python process) "
            "cannot run: start a local cluster with `dagyo up` and run it with "
            "`dagyo flow submit FLOW --wait`",
            EXIT_INVALID,
        )


def run_embedded(
    checked: CheckedFlow,
    line: Callable[[str, Any], str],
    *,
    cache: bool = False,
    refresh: bool = False,
) -> None:
    """Run a checked flow in this process, printing ``line(export, item)`` for each export;
    exit 1 (the failure report on stderr) when it fails, 2 when a progdef cannot start.
    With ``cache``, cached results are replayed and new ones recorded (``refresh``: every
    node runs)."""
    from executor.inprocess import tune_gc
    from scheduler.embedded import EmbeddedRunner

    refuse_node(checked)
    out = sys.stdout
    progress: Progress | None = None

    def on_export(name: str, message: Any) -> None:
        if progress is not None:
            progress.export(line(name, message))
        else:
            out.write(line(name, message) + "\n")

    try:
        folder = None
        if cache:
            from scheduler.cache import CacheSettings, FolderCache

            folder = FolderCache(CacheSettings.from_env())
        runner = EmbeddedRunner(checked, on_export=on_export, cache=folder, refresh=refresh)
    except DagyoError as e:  # DAGYO_EMBEDDED_SERIALIZE or a DAGYO_CACHE_ variable is wrong
        fail(str(e), EXIT_INVALID)
    tune_gc()  # this process is the flow's now
    if sys.stderr.isatty():
        progress = Progress(checked.flow.name, runner.progress_line)
    try:
        with terminate_interrupts():
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


@contextmanager
def terminate_interrupts() -> Iterator[None]:
    """SIGTERM (a `timeout`, a container or service stopped) ends a run as Ctrl-C does:
    every job stopped and the flow's offloaded items deleted, not a process gone at once
    leaving them in the store."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


remote_option = click.option(
    "--remote",
    is_flag=True,
    help="Ask the scheduler (--scheduler) for its catalogue, as your token sees it, "
    "instead of reading --progdefs.",
)


@click.command("progdefs")
@progdefs_option
@click.option(
    "--versions",
    is_flag=True,
    help="Ask the scheduler for each version: current, draining or retired, with its jobs "
    "and executors.",
)
@remote_option
@scheduler_option
def progdefs_command(
    progdefs_dir: Sequence[Path], versions: bool, remote: bool, address: str
) -> None:
    """List the catalogue: each progdef with its port types, then the progdefs left out
    (their protos do not load) and why; with --versions, each version the scheduler knows
    (state, jobs waiting, jobs running, executors pulling its mailbox)."""
    if versions:
        with connected(address) as client:
            rows = [("progdef", "version", "state", "waiting", "running", "executors")] + [
                (v.progdef, v.version, v.state, str(v.waiting), str(v.running), str(v.executors))
                for v in client.versions()
            ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return
    if remote:
        with connected(address) as client:
            answer = client.catalogue()
        progdefs = [
            (
                p.name,
                [(port.name, port.type) for port in p.inputs],
                [(port.name, port.type) for port in p.outputs],
                p.description,
            )
            for p in answer.progdefs
        ]
        left_out = [(left.progdef, list(left.problems)) for left in answer.left_out]
    else:
        catalogue = catalogue_of(progdefs_dir, warn=False)
        progdefs = [
            (p.name, list(p.inputs.items()), list(p.outputs.items()), p.description)
            for p in catalogue.values()
        ]
        left_out = [(left.name, list(left.problems)) for left in catalogue.left_out.values()]
    for name, inputs, outputs, description in progdefs:
        ins = ", ".join(f"{port}: {type_}" for port, type_ in inputs)
        outs = ", ".join(f"{port}: {type_}" for port, type_ in outputs)
        click.echo(f"{name}  ({ins}) -> ({outs})")
        if description:
            click.echo(f"    {description}")
    for name, problems in left_out:
        for problem in problems:
            click.echo(f"{name}  left out: {problem}")
        click.echo('    fix its .proto files, or take them out of "protos"')


@click.command("types")
@click.argument("name", metavar="[NAME]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object a line).")
@click.option("--schema", is_flag=True, help="Print the JSON Schema of NAME's JSON form.")
@progdefs_option
@remote_option
@scheduler_option
def types_command(
    name: str | None,
    as_json: bool,
    schema: bool,
    progdefs_dir: Sequence[Path],
    remote: bool,
    address: str,
) -> None:
    """List every type of the catalogue (built in, well-known, custom) with its fields and
    docs; with NAME, that one type. --schema prints the JSON Schema of NAME's JSON form.

    Exits 0; 2 for an unknown NAME (with a did-you-mean).
    """
    import json

    if schema and not name:
        fail("--schema needs a NAME: `dagyo types dagyo.types.Text --schema`", EXIT_INVALID)
    if remote:
        infos, schemas = _remote_types(address)
        if name is not None and name not in infos:
            fail(
                f"no type named {name!r} in the scheduler's catalogue"
                f"{did_you_mean(name, infos)}: `dagyo types --remote` lists them",
                EXIT_INVALID,
            )
        if schema:
            click.echo(json.dumps(schemas[str(name)], indent=2))
            return
        for info in [infos[name]] if name else infos.values():
            _print_type(info, as_json=as_json, detailed=bool(name))
        return

    from executor.core.errors import UnknownType
    from executor.core.types import unknown_typename
    from scheduler.flow.typedocs import catalogue_typenames, describe_type, json_schema

    catalogue = catalogue_of(progdefs_dir)
    try:
        if schema:
            click.echo(json.dumps(json_schema(str(name)), indent=2))
            return
        for typename in [name] if name else catalogue_typenames(catalogue):
            _print_type(describe_type(typename, catalogue), as_json=as_json, detailed=bool(name))
    except UnknownType:
        fail(unknown_typename(str(name)), EXIT_INVALID)


def _remote_types(address: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The scheduler's types, as :func:`describe_type` gives them, and their JSON Schemas;
    its left-out progdefs as warnings on stderr, as from a folder."""
    import json

    from executor.core.progdef import LeftOut

    with connected(address) as client:
        answer = client.catalogue()
    for left in answer.left_out:
        for line in LeftOut(left.progdef, tuple(left.problems)).lines():
            click.echo(f"dagyo: warning: {line}", err=True)
    infos = {
        t.typename: {
            "typename": t.typename,
            "source": t.source,
            "doc": t.doc,
            "fields": [{"name": f.name, "type": f.type, "doc": f.doc} for f in t.fields],
            "used_by": list(t.used_by),
        }
        for t in answer.types
    }
    return infos, {t.typename: json.loads(t.json_schema) for t in answer.types}


def _print_type(info: dict[str, Any], *, as_json: bool, detailed: bool) -> None:
    import json

    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
        return
    fields = ", ".join(f"{f['name']}: {f['type']}" for f in info["fields"])
    click.echo(f"{info['typename']}  {{{fields}}}")
    if info["doc"]:
        click.echo("\n\n".join(_wrapped(p, "    ") for p in info["doc"].split("\n\n")))
    if info["source"] and "built in" not in info["source"]:
        click.echo(f"    defined in {info['source']}")
    if detailed:
        for field in info["fields"]:
            doc = f"  {' '.join(field['doc'].split())}" if field["doc"] else ""
            click.echo(_wrapped(f"{field['name']}: {field['type']}{doc}", "    ", "        "))


def _wrapped(text: str, indent: str, subsequent: str | None = None) -> str:
    """Text wrapped to the terminal (at most 100 columns), each line indented."""
    import shutil
    import textwrap

    width = min(shutil.get_terminal_size().columns, 100)
    return textwrap.fill(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent if subsequent is None else subsequent,
        break_on_hyphens=False,
    )
