"""The errors only the scheduler's programs raise: the CLI's, the deploy tools' and the
state store's.

They belong to the one tree of :mod:`executor.core.errors`, rooted at DagyoError; they are
kept here so that a progdef image, which installs ``executor/`` only, carries none of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from executor.core.errors import DagyoError, Unavailable, Unreachable


class TlsInvalid(DagyoError):
    """Raised when a TLS variable names a file that cannot be read or is not PEM."""


class DockerUnavailable(Unreachable):
    """Raised when no Docker daemon answers where the Docker SDK looked for one."""

    def __init__(self, where: str, reason: str = "") -> None:
        super().__init__(
            "the Docker daemon",
            where,
            reason,
            fix="start Docker, or set DOCKER_HOST to a daemon you can reach (e.g. "
            "unix:///var/run/docker.sock, ssh://USER@HOST, tcp://HOST:2376); `dagyo build "
            "--print` shows the build plan without a daemon",
        )


class ClusterUnavailable(DagyoError):
    """Raised when no Kubernetes cluster is configured or its API server does not answer."""


class ManifestError(DagyoError):
    """Raised when a catalogue cannot be rendered as valid Kubernetes objects."""


class ApplyFailed(DagyoError):
    """Raised when the API server refuses an object; names the object and the reason."""


class RuntimeSourcesMissing(DagyoError):
    """Raised when the base or scheduler image is asked for without a dagyo source checkout."""


class InvalidReference(DagyoError):
    """Raised when a registry or tag would make an image reference Docker refuses."""


class ImageBuildFailed(DagyoError):
    """Raised when the Docker daemon fails to build or push an image; names the image."""


# How many unpinned images a refusal names before it counts the rest.
UNPINNED_NAMED = 5


class ImagesNotPinned(DagyoError):
    """Raised when ``dagyo deploy`` would run an image by tag, without a digest.

    Attributes:
        unpinned: each such image as ``(reference, what runs it)``, e.g.
            ``("REGISTRY/dagyo-greet:0123…", "progdef greet")``.
    """

    def __init__(self, unpinned: Sequence[tuple[str, str]]) -> None:
        self.unpinned = list(unpinned)
        named = ", ".join(f"{ref} ({what})" for ref, what in self.unpinned[:UNPINNED_NAMED])
        rest = len(self.unpinned) - UNPINNED_NAMED
        more = f" and {rest} more" if rest > 0 else ""
        super().__init__(
            f"{len(self.unpinned)} image(s) would run by tag, without a digest: {named}{more}; "
            "push them with `dagyo build --push` (it records each digest in the image lock, "
            "--lock), give --scheduler-image as REPOSITORY@sha256:…, or pass --allow-tags "
            "to deploy by tag"
        )


class StoreUnavailable(Unreachable):
    """Raised when the database of the scheduler's state cannot be reached (or is lost)."""

    def __init__(self, where: str, reason: str = "") -> None:
        super().__init__(
            "the scheduler's state",
            where,
            reason,
            fix="start the database, or set DAGYO_STATE to one that answers",
        )


class StateAway(Unavailable):
    """Raised when the scheduler refuses a write (submit, cancel) because the database of
    its state does not answer; it serves them again once the database does."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        super().__init__(
            f"{STATE_AWAY} {where}, is unreachable ({reason}): submit and cancel are refused "
            "until it answers again"
        )


# How a StateAway refusal begins, for clients to tell it from an unreachable scheduler.
STATE_AWAY = "its state, the database at"


class LeaseLost(DagyoError):
    """Raised when a write carries a lease epoch another scheduler has taken since: the
    write is refused and nothing of it is stored."""


class SchemaTooNew(DagyoError):
    """Raised when the state's schema was migrated by a newer scheduler than this one."""
