"""The scheduler's gRPC server: its services on one port (scheduler.service.server)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from executor.core.errors import DagyoError
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.pb.externalscaler import externalscaler_pb2_grpc
from scheduler.service.api import SERVICE_NAME, SchedulerServicer
from scheduler.service.scaler import SERVICE_NAME as SCALER_SERVICE
from scheduler.service.scaler import ScalerServicer
from scheduler.service.tenancy import AuthInterceptor

if TYPE_CHECKING:
    import threading

    from scheduler.service.auth import Authenticator
    from scheduler.service.catalogue import CatalogueCache
    from scheduler.service.config import SchedulerSettings
    from scheduler.service.flowservice import FlowService
    from scheduler.service.lifecycle import Lifecycle
    from scheduler.service.trigger_sources import TriggerService


def listen(
    settings: SchedulerSettings,
    health_servicer: health.HealthServicer,
    *,
    service: FlowService,
    authenticator: Authenticator,
    triggers: TriggerService | None,
    catalogue: CatalogueCache,
    lifecycle: Lifecycle,
    stopping: threading.Event,
) -> tuple[grpc.Server, str]:
    """Start gRPC with the scheduler's services: (the server, the ``host:port`` it listens
    on, a port 0 replaced by the one picked).

    Raises:
        DagyoError: when the address is taken.
    """
    # so_reuseport off: a second scheduler on a taken address must fail, not share it.
    limit = settings.max_message_bytes
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.grpc_workers),
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
        interceptors=[AuthInterceptor(authenticator)],
    )
    servicer = SchedulerServicer(
        service,
        authenticator=authenticator,
        workers=settings.grpc_workers,
        watches_per_client=settings.watches_per_client,
        triggers=triggers,
    )
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    scaler = ScalerServicer(
        catalogue=catalogue,
        jobs=lifecycle.table,
        depth=lifecycle.broker.queue_depth,
        stopping=stopping,
    )
    externalscaler_pb2_grpc.add_ExternalScalerServicer_to_server(scaler, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, SCALER_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    cause: RuntimeError | None = None
    try:
        tls = settings.tls
        port = (
            server.add_insecure_port(settings.address)
            if tls is None
            else server.add_secure_port(settings.address, tls.credentials())
        )
    except RuntimeError as e:
        port, cause = 0, e
    if not port:
        raise DagyoError(
            f"cannot listen on {settings.address}: another scheduler may be running; "
            "set DAGYO_SCHEDULER to a free host:port"
        ) from cause
    server.start()
    return server, f"{settings.host}:{port}"
