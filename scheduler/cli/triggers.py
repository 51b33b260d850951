"""``dagyo triggers``: the scheduler's CloudEvents triggers and their last firings."""

from __future__ import annotations

import json

import click
from google.protobuf import json_format

from scheduler.cli.common import connected, json_option, scheduler_option
from scheduler.cli.output import when


@click.command("triggers")
@json_option
@scheduler_option
def triggers_command(as_json: bool, address: str) -> None:
    """List the triggers the scheduler read from DAGYO_TRIGGERS: where each takes events,
    what it matches, its flow and its last firings (event id, source, flows); a refused
    trigger file with its problems.

    Exits 0; 3 when the scheduler cannot be reached.
    """
    with connected(address) as client:
        triggers = client.triggers()
    for trigger in triggers:
        if as_json:
            row = json_format.MessageToDict(trigger, preserving_proto_field_name=True)
            click.echo(json.dumps(row, ensure_ascii=False))
            continue
        if trigger.problems:
            for problem in trigger.problems:
                click.echo(f"{trigger.name}  refused: {problem}")
            continue
        tenant = f"  tenant {trigger.tenant}" if trigger.tenant else ""
        click.echo(
            f"{trigger.name}  {trigger.events}  {trigger.match}  -> {trigger.flow}{tenant}  "
            f"fired {trigger.fired}"
        )
        for firing in trigger.firings:
            flows = ", ".join(firing.flow_ids) or "-"
            click.echo(
                f"    {when(firing.time)}  event {firing.event_id} from {firing.event_source}"
                f"  -> {flows}"
            )
