"""The options of ``dagyo deploy`` for what the catalogue runs on: the schedulers and their
state, the broker, and the profile (scheduler.deploy.settings holds their choices)."""

from __future__ import annotations

from typing import Any

import click

from scheduler.deploy.settings import (
    BROKERS,
    LEASE_S,
    PROFILES,
    QUEUE_TYPES,
    STATE_SECRET,
)


def platform_options(function: Any) -> Any:
    """``--schedulers``, ``--state-secret``, ``--lease``, ``--broker``, ``--queue-type`` and
    ``--profile``."""
    options = [
        click.option(
            "--schedulers",
            type=click.IntRange(min=1),
            default=3,
            show_default=True,
            metavar="N",
            help="The scheduler's replicas, behind one Service and a PodDisruptionBudget; "
            "more than 1 needs --state-secret (a PostgreSQL they share).",
        ),
        click.option(
            "--state-secret",
            metavar="NAME",
            default=STATE_SECRET,
            show_default=True,
            help="The Secret whose key url is the schedulers' PostgreSQL URL (DAGYO_STATE); "
            "none: a SQLite file on --state-volume, with --schedulers 1.",
        ),
        click.option(
            "--lease",
            "lease_s",
            type=click.FloatRange(min=0, min_open=True),
            default=LEASE_S,
            show_default=True,
            metavar="SECONDS",
            help="How long a scheduler's lease on its flows lasts (DAGYO_LEASE_S): another "
            "takes them over this long after it died.",
        ),
        click.option(
            "--broker",
            type=click.Choice(BROKERS),
            default=BROKERS[0],
            show_default=True,
            help="The RabbitMQ of three nodes to render: operator (a RabbitmqCluster; install "
            "the RabbitMQ Cluster Operator first), statefulset (a StatefulSet with Kubernetes "
            "peer discovery), or none (one run elsewhere).",
        ),
        click.option(
            "--queue-type",
            type=click.Choice(QUEUE_TYPES),
            default=QUEUE_TYPES[0],
            show_default=True,
            help="DAGYO_QUEUE_TYPE of every dagyo process: the durable queues' type.",
        ),
        click.option(
            "--profile",
            type=click.Choice(PROFILES),
            default=PROFILES[0],
            show_default=True,
            help="development also renders a PostgreSQL of one pod and the --state-secret "
            "naming it; production expects a managed or operator-run PostgreSQL.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function
