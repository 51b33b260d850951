"""``dagyo build`` and ``dagyo deploy`` (scheduler/cli/deploy_commands.py).

They need the kubernetes and docker clients, which a core install (``pip install -e .``)
leaves out: those are imported when a command runs, which then prints the install hint
when they are missing; ``--help`` works either way.
"""

from __future__ import annotations

from scheduler.cli.deploy_commands import DEPLOY_EXTRA, build, deploy

__all__ = ["DEPLOY_EXTRA", "build", "deploy"]
