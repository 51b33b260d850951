"""``dagyo invoke PROGDEF --input PORT=JSON``: one progdef run like a function.

Exit status as ``dagyo run``: 0 succeeded, 1 failed (the failure report on stderr), 2 an
invalid invocation (an unknown progdef or port, a value of the wrong type); through the
scheduler also 3 unreachable, 4 refused for want of a valid token, 5 outputs dropped past
the scheduler's cap.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from executor.core.errors import FlowInvalid
from scheduler.cli.common import (
    EXIT_INVALID,
    catalogue_of,
    code_of,
    connected,
    fail,
    progdefs_option,
    scheduler_option,
    utf8_arguments,
)
from scheduler.cli.output import output_json, output_line


@click.command("invoke")
@click.argument("progdef")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="PORT=JSON",
    help="Items for input PORT: one JSON item, or a JSON list; repeatable (a port given "
    "twice gets both). Every input of the progdef needs one.",
)
@click.option(
    "--local",
    is_flag=True,
    help="Run it in this process (no broker, no scheduler), as `dagyo run` does.",
)
@progdefs_option
@scheduler_option
def invoke(
    progdef: str, inputs: tuple[str, ...], local: bool, progdefs_dir: Sequence[Path], address: str
) -> None:
    """Run PROGDEF once on the given items (through the scheduler and an executor, or
    embedded with --local); each output item to stdout as one JSON line
    `{"output": PORT, "value": {...}}`.

    \b
    Example:
      dagyo invoke greet --input name='{"text": "Ada"}' --local

    Exits as `dagyo run`: 0 succeeded, 1 failed (the failure report on stderr), 2 invalid
    (every problem on stderr); through the scheduler also 3 when it cannot be reached and 5
    when outputs past its cap were dropped. The flow id goes to stderr.
    """
    if local:
        _invoke_local(progdef, inputs, progdefs_dir)
        return
    utf8_arguments("PROGDEF", [progdef])
    utf8_arguments("--input", inputs)
    from scheduler.cli.flow import end_status

    with connected(address) as client:
        flow_id, end, seen = "", None, 0
        try:
            for event in client.invoke(progdef, inputs):
                kind = event.WhichOneof("kind")
                if kind == "flow_id":
                    flow_id = event.flow_id
                    click.echo(flow_id, err=True)
                elif kind == "output":
                    seen += 1
                    sys.stdout.write(output_json(event.output) + "\n")
                    sys.stdout.flush()
                elif kind == "end":
                    end = event.end
        except KeyboardInterrupt:
            fail(
                f"stopped following flow {flow_id}; it goes on "
                f"(`dagyo flow cancel {flow_id}` stops it)",
                130,
            )
        sys.exit(end_status(client, flow_id, end, seen))


def _invoke_local(progdef: str, inputs: tuple[str, ...], progdefs_dir: Sequence[Path]) -> None:
    from scheduler.cli.local import run_embedded
    from scheduler.flow.check import check_flow
    from scheduler.flow.invoke import SOURCE, invocation_flow
    from scheduler.flow.parse import parse_flow

    catalogue = catalogue_of(progdefs_dir)
    source = f"{SOURCE} {progdef}"
    try:
        flow = parse_flow(invocation_flow(progdef, inputs, catalogue), source=source)
        checked = check_flow(flow, catalogue, source=source)
    except FlowInvalid as e:
        fail(str(e), EXIT_INVALID)
    code_of({p.name: p for p in checked.progdefs.values()})
    run_embedded(checked, output_line)
