"""``dagyo build`` and ``dagyo deploy``, or a one-line hint when the deploy extra is missing.

The commands themselves live in scheduler/cli/deploy_commands.py; they need the kubernetes
and docker clients, which a core install (``pip install -e .``) leaves out.
"""

from __future__ import annotations

import click

from scheduler.cli.common import EXIT_INVALID, fail

#: The top-level modules of the ``deploy`` extra (urllib3 comes with the kubernetes client).
DEPLOY_EXTRA = ("kubernetes", "docker", "urllib3")


def _needs_extra(name: str, missing: str) -> click.Command:
    """A stand-in for ``dagyo NAME``: it takes any arguments and prints the install hint."""

    @click.command(
        name,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
        help=f"(needs the deploy extra: pip install 'dagyo[deploy]'; {missing} is missing)",
    )
    @click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
    def command(arguments: tuple[str, ...]) -> None:
        fail(
            f"{name} needs the deploy extra ({missing} is not installed): "
            "pip install 'dagyo[deploy]'",
            EXIT_INVALID,
        )

    return command


build: click.Command
deploy: click.Command
try:
    from scheduler.cli.deploy_commands import build, deploy
except ImportError as e:
    if (e.name or "").partition(".")[0] not in DEPLOY_EXTRA:
        raise
    build = _needs_extra("build", e.name or "")
    deploy = _needs_extra("deploy", e.name or "")
