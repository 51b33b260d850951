"""``dagyo failures``: the failures recorded so far, and with --follow the new ones live.

It parses arguments and calls the scheduler's API, or with --follow --broker
scheduler.client.failures on the broker's failure exchange. Exit status: 0 done, 3 the
scheduler (with --broker: the broker) is unreachable, 4 no valid token.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable

import click

from executor.core.constants import DEFAULT_QUEUE_URL, ENV_QUEUE, FAILURES_EXCHANGE
from executor.core.drain import stop_signals
from executor.core.errors import BrokerUnavailable, SchedulerError, SchedulerUnavailable
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.cli.common import EXIT_UNREACHABLE, connected, fail, json_option, scheduler_option
from scheduler.cli.output import failure_dict, failure_line
from scheduler.client.api import SchedulerClient


@click.command("failures")
@click.option("--flow", "flow_id", metavar="ID", default="", help="Only the failures of this flow.")
@json_option
@click.option(
    "--follow",
    is_flag=True,
    help="Then keep printing new failures live, until Ctrl-C.",
)
@click.option(
    "--broker",
    is_flag=True,
    help="Operators: follow the failure exchange on DAGYO_QUEUE directly (broker "
    "credentials), instead of the scheduler's API.",
)
@scheduler_option
def failures_command(flow_id: str, as_json: bool, follow: bool, broker: bool, address: str) -> None:
    """Print the failures recorded so far, one a line: `FLOW NODE (PROGDEF) on EXECUTOR: ERROR`.

    With --follow it then prints each new failure as the scheduler records it (your
    tenant's only, when tokens are on), until Ctrl-C. --follow --broker watches the broker's
    failure exchange instead (every failure; needs the broker's credentials in DAGYO_QUEUE;
    without a reachable scheduler it says so and follows the broker alone). Exits 0; 3 when
    the scheduler (with --broker: the broker) cannot be reached; 4 without a valid token.
    """

    def show(report: FailureReport) -> None:
        if as_json:
            click.echo(json.dumps(failure_dict(report), ensure_ascii=False))
        else:
            click.echo(failure_line(report))

    if not follow:
        with connected(address) as client:
            reports = client.failures(flow_id)
        for report in reports:
            show(report)
        return
    if broker:
        _follow_failures(flow_id, address, show)
        return
    with connected(address) as client, stop_signals() as stop:
        shown = 0
        while True:
            reports = client.failures(flow_id)
            for report in reports[shown:]:
                show(report)
            sys.stdout.flush()
            shown = len(reports)
            if stop.wait(FOLLOW_POLL_S):
                return


# How often `failures --follow` asks the scheduler for new failures.
FOLLOW_POLL_S = 0.5


def _follow_failures(flow_id: str, address: str, show: Callable[[FailureReport], None]) -> None:
    from scheduler.client.failures import FailureFollower

    logging.getLogger("pika").addHandler(logging.NullHandler())
    queue_url = os.environ.get(ENV_QUEUE) or DEFAULT_QUEUE_URL
    follower = FailureFollower(queue_url, flow_id=flow_id)
    try:
        follower.connect()
    except BrokerUnavailable as e:
        fail(str(e), EXIT_UNREACHABLE)

    def past() -> list[FailureReport]:
        try:
            with SchedulerClient(address) as client:
                return client.failures(flow_id)
        except (SchedulerUnavailable, SchedulerError) as e:
            click.echo(f"dagyo: {e}", err=True)
            click.echo(
                "dagyo: past failures are unavailable; following new ones on the broker",
                err=True,
            )
            return []

    def skipped(routing_key: str) -> None:
        click.echo(
            f"dagyo: skipped a message on {FAILURES_EXCHANGE} that is not a "
            f"FailureReport (routing key {routing_key})",
            err=True,
        )

    with stop_signals() as stop:
        try:
            follower.follow(show, stop=stop, past=past, on_undecodable=skipped)
        except BrokerUnavailable as e:
            fail(str(e), EXIT_UNREACHABLE)
        finally:
            follower.close()
