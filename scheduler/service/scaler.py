"""KEDA's external scaler, served by the scheduler: a progdef's true demand in job slots.

KEDA's RabbitMQ trigger counts the messages ready in a mailbox, but an executor acks a job
the moment it starts, so a mailbox of busy executors reads 0 and KEDA would scale them
down mid-flow. The scheduler knows both halves: the jobs waiting in the mailbox (its
depth) and the jobs running (the flows' records). :class:`ScalerServicer` answers KEDA's
``externalscaler.ExternalScaler`` with their sum, and the progdef's ``max_jobs`` as the
target per replica, so KEDA asks for ``ceil(demand / max_jobs)`` executors.

A ScaledObject's trigger names what to scale in its metadata::

    triggers:
      - type: external-push
        metadata: {scalerAddress: "dagyo-scheduler:50051", progdef: "greet"}

``version`` may be added; without it the catalogue's current version is meant.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc

from executor.core.constants import mailbox_name
from executor.core.errors import BrokerError, ProgdefInvalid
from executor.core.progdef import Catalogue
from scheduler.pb.externalscaler import externalscaler_pb2 as pb
from scheduler.pb.externalscaler import externalscaler_pb2_grpc


class Jobs(Protocol):
    """The jobs of flows not ended, by progdef version (the lifecycle's flow table)."""

    def jobs_running_of(self, progdef: str, version: str) -> int:
        """Jobs of the version that run now."""
        ...

    def jobs_held_of(self, progdef: str, version: str) -> int:
        """Jobs of the version whose flows wait for admission."""
        ...


log = logging.getLogger("dagyo.scheduler.scaler")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name
# How often a StreamIsActive call looks at the demand; it answers only when activity changes.
STREAM_POLL_S = 1.0


@dataclass(frozen=True)
class Target:
    """One progdef version a trigger scales: its mailbox and its jobs per executor."""

    progdef: str
    version: str
    mailbox: str
    max_jobs: int

    @property
    def metric(self) -> str:
        """The metric's name: one per progdef version, as KEDA requires per trigger."""
        return f"dagyo-jobs-{self.progdef}-{self.version}"


class ScalerServicer(externalscaler_pb2_grpc.ExternalScalerServicer):
    """``externalscaler.ExternalScaler`` over one scheduler's catalogue, broker and records.

    Args:
        catalogue: the catalogue the scheduler schedules from.
        jobs: the jobs of its flows, waiting for admission or running.
        depth: the jobs waiting in a mailbox, None when it does not exist (raising
            BrokerError when the broker cannot be asked).
        stopping: set once the scheduler stops; activity streams then end.
    """

    def __init__(
        self,
        *,
        catalogue: Callable[[], Catalogue],
        jobs: Jobs,
        depth: Callable[[str], int | None],
        stopping: threading.Event,
    ) -> None:
        self._catalogue = catalogue
        self._jobs = jobs
        self._depth = depth
        self._stopping = stopping

    def IsActive(self, request: pb.ScaledObjectRef, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """True while a job of the progdef version waits or runs."""
        target = self._target(request, context)
        return pb.IsActiveResponse(result=self._demand(target, context) > 0)

    def StreamIsActive(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> Iterator[pb.IsActiveResponse]:
        """The activity now, then again each time it changes, until KEDA hangs up."""
        target = self._target(request, context)
        last: bool | None = None
        while context.is_active() and not self._stopping.is_set():
            active = self._demand(target, context) > 0
            if active != last:
                last = active
                yield pb.IsActiveResponse(result=active)
            time.sleep(STREAM_POLL_S)

    def GetMetricSpec(self, request: pb.ScaledObjectRef, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """One metric, the demand in job slots, with ``max_jobs`` as the target per replica."""
        target = self._target(request, context)
        spec = pb.MetricSpec(
            metricName=target.metric, targetSize=target.max_jobs, targetSizeFloat=target.max_jobs
        )
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The demand: jobs waiting in the mailbox or for admission, plus jobs running."""
        target = self._target(request.scaledObjectRef, context)
        demand = self._demand(target, context)
        value = pb.MetricValue(
            metricName=request.metricName or target.metric,
            metricValue=demand,
            metricValueFloat=demand,
        )
        return pb.GetMetricsResponse(metricValues=[value])

    def _target(self, ref: pb.ScaledObjectRef, context: grpc.ServicerContext) -> Target:
        return resolve(ref.scalerMetadata, self._catalogue, context)

    def _demand(self, target: Target, context: grpc.ServicerContext) -> int:
        try:
            waiting = self._depth(target.mailbox) or 0
        except BrokerError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        held = self._jobs.jobs_held_of(target.progdef, target.version)
        return waiting + held + self._jobs.jobs_running_of(target.progdef, target.version)


def resolve(
    metadata: Mapping[str, str], catalogue: Callable[[], Catalogue], context: Any
) -> Target:
    """The progdef version a trigger's metadata names, or abort the call saying why."""
    name = metadata.get("progdef", "")
    if not name:
        _abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "the trigger's metadata names no progdef: add progdef: NAME to it",
        )
    try:
        progdefs = catalogue()
    except ProgdefInvalid as e:
        log.error("the scaler cannot answer: %s", e)
        _abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            "the scheduler's progdef catalogue is invalid: its log names the problems",
        )
    progdef = progdefs.get(name)
    if progdef is None:
        # The scaler answers without a token: name nothing of the catalogue but what was
        # asked, and that cut.
        shown = name if len(name) <= 100 else name[:100] + "…"
        _abort(
            context,
            grpc.StatusCode.NOT_FOUND,
            f"no progdef {shown} in the scheduler's catalogue: check the progdef the "
            "trigger's metadata names",
        )
    version = metadata.get("version") or progdef.version
    return Target(
        progdef=name,
        version=version,
        mailbox=mailbox_name(name, version),
        max_jobs=progdef.scaling.max_jobs,
    )


def _abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover
