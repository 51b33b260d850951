"""The `dagyo` command line. It parses arguments and calls; the work lives elsewhere.

Every command is listed once, in :data:`COMMANDS`, and imported only when it runs (or
``--help`` lists it): ``dagyo deploy`` needs the kubernetes client, which takes half a
second to import, and ``dagyo run`` should not pay for it.
"""

from __future__ import annotations

import importlib
import os
import sys

# `dagyo up` starts executor processes while its scheduler serves gRPC; with gRPC's fork
# handlers on, such a child can die before it execs (grpc/grpc#43055). Set before grpc loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# gRPC's own log lines (a failed TLS handshake, at each attempt) only repeat what dagyo
# says in one line; its errors still show.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import click

from executor.core.errors import (
    BrokerUnavailable,
    BrokerUrlInvalid,
    DagyoError,
    SchedulerUnavailable,
)
from scheduler.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_UNREACHABLE, fail

#: command name -> "module:attribute" of its click command.
COMMANDS = {
    "validate": "scheduler.cli.local:validate",
    "run": "scheduler.cli.local:run",
    "invoke": "scheduler.cli.invoke:invoke",
    "progdefs": "scheduler.cli.local:progdefs_command",
    "types": "scheduler.cli.local:types_command",
    "flow": "scheduler.cli.flow:flow",
    "failures": "scheduler.cli.failures:failures_command",
    "triggers": "scheduler.cli.triggers:triggers_command",
    "scheduler": "scheduler.cli.cluster:scheduler_command",
    "up": "scheduler.cli.cluster:up_command",
    "build": "scheduler.cli.deploy:build",
    "deploy": "scheduler.cli.deploy:deploy",
    "cache": "scheduler.cli.cache:cache",
}


class _LazyGroup(click.Group):
    """The top-level group: its commands come from :data:`COMMANDS`, imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[name].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


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
    except BrokerUrlInvalid as e:
        fail(str(e), EXIT_INVALID)
    except (BrokerUnavailable, SchedulerUnavailable) as e:
        fail(str(e), EXIT_UNREACHABLE)
    except DagyoError as e:
        fail(str(e), EXIT_FAILED)
