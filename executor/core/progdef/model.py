"""The progdef model: a progdef as loaded from its progdef.json, and the rules of its names.

Shared by the executor and the scheduler; it depends on nothing of dagyo but its constants
and the version hash.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from executor.core.constants import (
    DEFAULT_MAX_JOBS,
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_S,
    DRAIN_GRACE_S,
    mailbox_name,
)
from executor.core.version import progdef_version

# Each running job is a thread of its executor and holds one AMQP channel; past one
# connection's channels (2047 on RabbitMQ) its jobs' streams go on further connections
# (executor/_runtime/transport/spread.py), so the bound is the threads one process holds.
MAX_JOBS_LIMIT = 10_000
# A function-style job's items in flight at once: each is a coroutine (async def handler)
# or a thread of the job (a plain one), so the bound keeps a plain handler's threads sane.
MAX_CONCURRENCY = 1000
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
TYPENAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
TYPE_VARIABLE = re.compile(r"^[A-Z][A-Z0-9]*$")
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
STYLES = ("stream", "function")
# deployment: long-lived executors; job: one job per pod (its executor runs --one-job).
SCALING_MODES = ("deployment", "job")


def is_type_variable(port_type: str) -> bool:
    """Return True when a port type is a type variable such as ``T``, not a typename."""
    return bool(TYPE_VARIABLE.fullmatch(port_type))


@dataclass(frozen=True)
class Scaling:
    """How many jobs one executor runs and how many executors may serve the progdef."""

    max_jobs: int = DEFAULT_MAX_JOBS
    min_executors: int = 0
    max_executors: int = 10
    # ``deployment`` (long-lived executors) or ``job`` (one job per pod, max_jobs 1).
    mode: str = SCALING_MODES[0]


@dataclass(frozen=True)
class Resources:
    """What one executor of the progdef asks the cluster for."""

    cpu: str = "100m"
    memory: str = "128Mi"
    gpu: int = 0


@dataclass(frozen=True)
class Retries:
    """Function style: how often an item is tried before the job panics."""

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    backoff_s: float = DEFAULT_RETRY_BACKOFF_S


@dataclass(frozen=True)
class Progdef:
    """One progdef, as read from its progdef.json.

    Attributes:
        directory: the folder holding progdef.json (None when loaded from a mapping).
        inputs / outputs: port name -> typename or type variable.
        run: ``module:attribute`` relative to the image build context (``FILE:EXPORT`` for
            runtime ``node``).
        style: ``stream`` (``run(job)``) or ``function`` (``handler(ctx, item)``).
    """

    name: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    run: str
    description: str = ""
    # ``python`` (``python -m executor``) or ``node`` (sdks/js's executor; ``run`` is
    # ``FILE:EXPORT`` of an ES module).
    runtime: str = "python"
    style: str = "stream"
    init: str = ""
    retries: Retries = field(default_factory=Retries)
    dockerfile: str = "Dockerfile"
    context: str = "."
    scaling: Scaling = field(default_factory=Scaling)
    resources: Resources = field(default_factory=Resources)
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    drain_grace_s: float = DRAIN_GRACE_S
    # The error port: an output of type dagyo.types.Error that failed items go to ("" = none).
    errors: str = ""
    # .proto files (relative to the folder) defining the messages its ports use.
    protos: tuple[str, ...] = ()
    # The tenants that may use it; None for every tenant.
    tenants: tuple[str, ...] | None = None
    # Outputs depend only on the input items and the version: its results may be cached.
    deterministic: bool = False
    # Function style: how many items of one job may be in flight at once (results are
    # still sent in input order).
    concurrency: int = 1
    directory: Path | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def context_dir(self) -> Path:
        """The image build context, where the ``run`` module's path starts."""
        base = self.directory if self.directory is not None else Path.cwd()
        return (base / self.context).resolve()

    @cached_property
    def version(self) -> str:
        """The content hash naming this progdef's mailbox (see :func:`progdef_version`),
        computed once per loaded progdef: hashing reads its whole build context."""
        return progdef_version(self)

    @cached_property
    def mailbox(self) -> str:
        """The mailbox queue of this progdef version."""
        return mailbox_name(self.name, self.version)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
