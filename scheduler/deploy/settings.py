"""What ``dagyo deploy`` renders besides the catalogue: :class:`DeploySettings` and the
choices its options take."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from executor.core.constants import PREFIX
from executor.core.errors import DagyoError
from scheduler.deploy.credentials import TLS_SECRET, TOKENS_SECRET, check_secret_name
from scheduler.deploy.images import SCHEDULER_IMAGE
from scheduler.errors import ManifestError

QUEUE_SECRET = "dagyo-queue"
# The Secret whose key `url` is the schedulers' PostgreSQL URL (DAGYO_STATE).
STATE_SECRET = "dagyo-state"
AUTOSCALER_KEDA = "keda"
AUTOSCALERS = (AUTOSCALER_KEDA, "none")
# What a ScaledObject's trigger asks: the scheduler's external scaler (jobs waiting plus
# running, docs/deploy.md "Autoscaling") or KEDA's RabbitMQ scaler (jobs waiting only).
SCALER_EXTERNAL = "external"
SCALER_RABBITMQ = "rabbitmq"
SCALERS = (SCALER_EXTERNAL, SCALER_RABBITMQ)
STATE_VOLUMES = ("pvc", "emptydir")
# Quorum first: the broker rendered has three nodes, and quorum queues survive one's loss.
QUEUE_TYPES = ("quorum", "classic")
BROKER_OPERATOR = "operator"
BROKER_STATEFULSET = "statefulset"
BROKERS = (BROKER_OPERATOR, BROKER_STATEFULSET, "none")
PROFILE_DEVELOPMENT = "development"
PROFILES = ("production", PROFILE_DEVELOPMENT)
# A scheduler's lease on the flows it owns (DAGYO_LEASE_S).
LEASE_S = 10.0


@dataclass(frozen=True, kw_only=True)
class DeploySettings:
    """What ``dagyo deploy`` renders besides the catalogue itself.

    Attributes:
        namespace: where every object goes.
        registry: the registry prefix of the progdef images' tags.
        images: the image lock, ``tag -> REPOSITORY@DIGEST``; images found there are
            pinned by digest.
        scheduler_image: the scheduler's image reference.
        autoscaler: ``keda`` (a ScaledObject per progdef) or ``none`` (fixed replicas).
        scaler: what the ScaledObjects ask: ``external`` (the scheduler, jobs waiting
            plus running) or ``rabbitmq`` (the broker, jobs waiting only).
        scaler_address: ``host:port`` of the scheduler's gRPC for KEDA; empty means the
            scheduler's Service in ``namespace``.
        state_volume: ``pvc`` (the claim in deploy/k8s/) or ``emptydir`` for the
            scheduler's SQLite state (without ``state_secret`` only).
        schedulers: the scheduler's replicas; more than 1 needs ``state_secret``.
        state_secret: the Secret whose ``url`` key is the PostgreSQL URL the schedulers
            share (``DAGYO_STATE``); empty: a SQLite file on ``state_volume``.
        lease_s: how long a scheduler's lease on its flows lasts (``DAGYO_LEASE_S``).
        queue_type: the durable queues' type, ``quorum`` or ``classic``
            (``DAGYO_QUEUE_TYPE`` of every dagyo process).
        broker: the RabbitMQ rendered: ``operator`` (a RabbitmqCluster of the RabbitMQ
            Cluster Operator), ``statefulset`` (a StatefulSet with Kubernetes peer
            discovery) or ``none`` (one run elsewhere).
        profile: ``production``, or ``development``, which adds a PostgreSQL of one pod
            and the ``state_secret`` naming it.
        queue_secret: the Secret whose ``url`` key holds the broker URL.
        tls_secret: the ``kubernetes.io/tls`` Secret of the scheduler's certificate
            (``tls.crt``, ``tls.key``, and ``ca.crt`` for KEDA); empty serves plain text.
        tokens_secret: the Secret whose ``tokens.yaml`` is the scheduler's token file;
            empty runs it open.
        allow_tags: render an image the lock has no digest for by its tag; when False
            (the default) such an image is refused (:class:`ImagesNotPinned`).
        triggers_dir: the scheduler's folder of trigger files, rendered as a ConfigMap
            (:mod:`scheduler.deploy.triggers`); None: no triggers.
        triggers_port: the port the scheduler takes CloudEvents on over HTTP, behind a
            Service; 0: none.
    """

    namespace: str = PREFIX
    registry: str = ""
    images: Mapping[str, str] = field(default_factory=dict)
    scheduler_image: str = f"{SCHEDULER_IMAGE}:latest"
    autoscaler: str = AUTOSCALER_KEDA
    scaler: str = SCALER_EXTERNAL
    scaler_address: str = ""
    state_volume: str = "pvc"
    queue_secret: str = QUEUE_SECRET
    tls_secret: str = TLS_SECRET
    tokens_secret: str = TOKENS_SECRET
    allow_tags: bool = False
    triggers_dir: Path | None = None
    triggers_port: int = 0
    schedulers: int = 3
    state_secret: str = STATE_SECRET
    lease_s: float = LEASE_S
    queue_type: str = QUEUE_TYPES[0]
    broker: str = BROKERS[0]
    profile: str = PROFILES[0]

    def __post_init__(self) -> None:
        if self.autoscaler not in AUTOSCALERS:
            raise ManifestError(f"autoscaler {self.autoscaler!r}: use one of {AUTOSCALERS}")
        if self.scaler not in SCALERS:
            raise ManifestError(f"scaler {self.scaler!r}: use one of {SCALERS}")
        if self.state_volume not in STATE_VOLUMES:
            raise ManifestError(f"state volume {self.state_volume!r}: use one of {STATE_VOLUMES}")
        for option, value, choices in (
            ("queue type", self.queue_type, QUEUE_TYPES),
            ("broker", self.broker, BROKERS),
            ("profile", self.profile, PROFILES),
        ):
            if value not in choices:
                raise ManifestError(f"{option} {value!r}: use one of {choices}")
        if self.schedulers < 1:
            raise ManifestError(f"--schedulers {self.schedulers}: 1 or more")
        if self.schedulers > 1 and not self.state_secret:
            raise ManifestError(
                f"--schedulers {self.schedulers}: schedulers can only share a PostgreSQL "
                "state: give them --state-secret, or run one with --schedulers 1"
            )
        if not 0 < self.lease_s < float("inf"):
            raise ManifestError(f"--lease {self.lease_s}: a number of seconds above 0")
        for option in ("queue_secret", "tls_secret", "tokens_secret", "state_secret"):
            try:
                check_secret_name(option, getattr(self, option))
            except DagyoError as e:
                raise ManifestError(str(e)) from None
        if self.triggers_port and self.triggers_dir is None:
            raise ManifestError(
                "--triggers-http needs --triggers: the folder of the triggers its events match"
            )
        if not 0 <= self.triggers_port <= 65535:
            raise ManifestError(f"--triggers-http {self.triggers_port}: a port from 1 to 65535")
