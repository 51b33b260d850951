"""The one error tree of dagyo, rooted at DagyoError.

Every program of dagyo (the executor, the scheduler, the CLI, the deploy tools) raises
errors of this tree: the executor side owns it because every progdef image installs it, and
the scheduler may depend on the executor, not the reverse. The errors only the CLI and the
deploy tools raise are its branches in :mod:`scheduler.errors`. Two bases carry what several
errors share: :class:`Invalid` the list of problems found (one a line), and
:class:`Unreachable` what could not be reached, where, why and what to do.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from pathlib import Path

from executor.core.brokerurls import split_urls


class DagyoError(Exception):
    """Raised when dagyo itself reports a problem; the message is meant for a person."""


# --- problems found -------------------------------------------------------------------------


class Invalid(DagyoError):
    """Raised when something read (a file, a flow, a request) has problems; carries each.

    Attributes:
        problems: one line each, naming the file, node or field and the fix.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class JsonProblems(Invalid, ValueError):
    """Raised when a document is not strict JSON; ``problems`` holds one line each."""


class ProgdefInvalid(Invalid):
    """Raised when a progdef.json file is malformed; carries every problem found."""


class ProtosInvalid(ProgdefInvalid):
    """Raised when a progdef's protos do not load: a .proto that does not compile, an
    import that does not resolve, a file outside its folder, or a message another progdef
    defines differently. The rest of its progdef.json is valid; a catalogue leaves it out.

    Attributes:
        progdef: the progdef's name.
        tenants: its ``tenants`` (None for every tenant), so a listing shows it only to
            the callers who could use it.
    """

    def __init__(
        self, problems: Sequence[str], *, progdef: str, tenants: tuple[str, ...] | None
    ) -> None:
        self.progdef = progdef
        self.tenants = tenants
        super().__init__(problems)


class FlowInvalid(Invalid):
    """Raised when a flow fails its checks; carries every problem found, one a line."""


class ProgdefNotFound(DagyoError):
    """Raised when a name does not match any progdef of the catalogue."""


class TypeMismatch(DagyoError):
    """Raised when a message's typename differs from the one its port declares."""


class UnknownType(DagyoError):
    """Raised when a typename is not a protobuf message this process knows."""


class TokensInvalid(DagyoError):
    """Raised when the ``DAGYO_TOKENS`` file cannot be read or is malformed."""


# --- what cannot be reached -----------------------------------------------------------------


class Unreachable(DagyoError):
    """Raised when a service dagyo needs does not answer.

    The message is ``cannot reach WHAT at WHERE (REASON): FIX``.

    Attributes:
        what: the service, e.g. ``the broker``.
        where: the address tried, without any password.
        reason: why it failed, when known (e.g. the error's type).
        fix: what to do about it.
    """

    def __init__(self, what: str, where: str, reason: str = "", *, fix: str) -> None:
        self.what = what
        self.where = where
        self.reason = reason
        self.fix = fix
        detail = f" ({reason})" if reason else ""
        super().__init__(f"cannot reach {what} at {where}{detail}: {fix}")


class BrokerError(DagyoError):
    """Raised when the broker refuses or fails an operation."""


class BrokerUnavailable(BrokerError, Unreachable):
    """Raised when the broker cannot be reached at all."""

    def __init__(self, url: str, reason: str = "") -> None:
        self.url = url
        Unreachable.__init__(
            self,
            "the broker",
            redact_url(url),
            reason,
            fix="start RabbitMQ (e.g. `rabbitmq-server -detached`) or set DAGYO_QUEUE to its "
            "amqp:// URL",
        )


class BrokerRefused(BrokerUnavailable):
    """Raised when the broker answers but refuses the connection (credentials, vhost)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.what, self.where, self.reason, self.fix = "the broker", redact_url(url), reason, ""
        BrokerError.__init__(
            self, f"the broker at {redact_url(url)} refused the connection: {reason}"
        )


class SchedulerDisconnected(BrokerUnavailable):
    """Raised when the scheduler answers but refuses a call while its broker is away."""

    def __init__(self, message: str) -> None:
        self.url = ""
        self.what, self.where, self.reason, self.fix = "the broker", "", message, ""
        BrokerError.__init__(self, message)


class QueueTypeMismatch(DagyoError):
    """Raised when a durable queue exists on the broker with another type than the one
    DAGYO_QUEUE_TYPE asks for (a classic mailbox under quorum): a queue never changes type."""

    def __init__(self, queue: str, wanted: str, current: str, how_to_move: str) -> None:
        self.queue = queue
        super().__init__(
            f"queue {queue} exists on the broker as a {current} queue and DAGYO_QUEUE_TYPE "
            f"asks for {wanted}: a queue keeps its type; {how_to_move}, or set "
            f"DAGYO_QUEUE_TYPE={current}"
        )


class BrokerUrlInvalid(DagyoError):
    """Raised when DAGYO_QUEUE (or a broker URL given otherwise) is not a usable amqp:// URL."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"not a valid amqp:// URL: {redact_url(url)} ({reason}); the form is "
            "amqp://USER:PASSWORD@HOST:PORT/VHOST, with # / ? @ : % in the user name or "
            "password percent-encoded (%23 %2F %3F %40 %3A %25)"
        )


class SchedulerUnavailable(Unreachable):
    """Raised when the scheduler's gRPC address does not answer."""

    def __init__(self, address: str, reason: str = "", fix: str = "") -> None:
        self.address = address
        super().__init__(
            "the scheduler",
            address,
            reason,
            fix=fix
            or "start it with `dagyo up` or `dagyo scheduler`, or set DAGYO_SCHEDULER to its "
            "host:port",
        )


class SchedulerStateAway(SchedulerUnavailable):
    """Raised when the scheduler answers but refuses a write because the database of its
    state does not answer."""

    def __init__(self, address: str, message: str) -> None:
        self.address = address
        self.what, self.where, self.reason, self.fix = "the scheduler", address, message, ""
        DagyoError.__init__(self, f"the scheduler at {address} refused: {message}")


class ObjectStoreUnavailable(Unreachable):
    """Raised when the object store (DAGYO_OBJECTS) does not answer or refuses a call."""

    def __init__(self, store: str, reason: str = "") -> None:
        self.store = store
        super().__init__(
            "the object store",
            store,
            reason,
            fix="check that it runs and that DAGYO_OBJECTS (and, for s3://, the AWS_* "
            "settings and AWS_ENDPOINT_URL) name it",
        )


class ObjectStoreInvalid(DagyoError):
    """Raised when DAGYO_OBJECTS (or an object key) is not one an object store takes."""


class ObjectMissing(DagyoError):
    """Raised when an object store holds no object under a key that was asked for."""


# --- jobs and streams -----------------------------------------------------------------------


class DecodeError(DagyoError):
    """Raised when an item on a stream does not decode as its port's typename."""


class StreamCorrupt(DecodeError):
    """Raised when a stream's frames are out of order, of another typename, or past its end."""


class ItemChanged(DagyoError):
    """Raised when an item was changed after it was sent (found with DAGYO_EMBEDDED_SERIALIZE=1)."""


class Stopped(DagyoError):
    """Raised inside a job when its flow was stopped; catch it to clean up, then re-raise."""


class InitFailed(DagyoError):
    """Raised when a progdef's ``init`` raised: ``progdef NAME: init failed: Type: message``
    and the frames of the progdef's own code (those under its folder), without the
    runtime's.
    """

    def __init__(self, progdef: str, context_dir: Path, error: Exception) -> None:
        context = context_dir.resolve()
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if Path(frame.filename).resolve().is_relative_to(context)
        ]
        super().__init__(
            f"progdef {progdef}: init failed: {type(error).__name__}: {error}\n"
            + "".join(traceback.format_list(frames)).rstrip()
        )


def redact_url(url: str) -> str:
    """Return url with any password replaced by ``***``, for messages and logs.

    Never parses the URL (a malformed one must not raise, nor leak): whatever lies between
    ``://`` and the last ``@`` is the user information, of which only the user name is kept.
    A password holding an unencoded ``#``, ``/``, ``?`` or ``@`` is therefore hidden too. A
    list of URLs separated by ``;`` (DAGYO_QUEUE for several broker nodes) is split as
    :func:`executor.core.brokerurls.split_urls` splits it and each of them is redacted.
    """
    return ";".join(_redact_one(part) for part in split_urls(url))


def _redact_one(url: str) -> str:
    scheme, separator, rest = url.rpartition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    hidden = f"{user}:***" if colon else user
    return f"{scheme}{separator}{hidden}@{host}"


# --- the scheduler --------------------------------------------------------------------------


class SchedulerError(DagyoError):
    """Raised when the scheduler fails a request for a reason of its own."""


class SchedulerUnauthenticated(SchedulerError):
    """Raised when the scheduler requires a token and the call had none, or a bad one."""


class SchedulerRefused(Invalid, SchedulerError):
    """Raised when the scheduler refuses a request; carries its problem lines, one a line."""

    def __init__(self, problems: Sequence[str], *, code: str = "") -> None:
        self.code = code
        super().__init__(list(problems) or ["the scheduler refused the request"])


class Unauthenticated(DagyoError):
    """Raised when a call carries no token, or one the token file does not know."""


class QuotaExceeded(DagyoError):
    """Raised when a Submit asks for more than its token's quotas allow."""

    def __init__(self, quota: str, limit: float, asked: str) -> None:
        self.quota = quota
        shown = str(int(limit)) if float(limit).is_integer() else str(limit)
        super().__init__(f"quota {quota} is {shown} for this token; {asked}")


class FlowNotFound(SchedulerError):
    """Raised when a call names a flow the scheduler does not have, or one of another tenant
    (which answers alike, so that tenants cannot probe each other's flows).

    Attributes:
        flow_id: the id the call named.
    """

    def __init__(self, flow_id: str, message: str) -> None:
        self.flow_id = flow_id
        super().__init__(message)


class RequestInvalid(Invalid, SchedulerError):
    """Raised when a call's arguments are malformed (a deadline, a page token); carries
    each problem, one a line."""


class PreconditionFailed(Invalid, SchedulerError):
    """Raised when a sound call cannot be served as things stand: the scheduler's catalogue
    is invalid, or a progdef of the flow has no executor or autoscaler behind it; carries
    each problem, one a line."""


class LimitReached(SchedulerError):
    """Raised when a caller holds as many watch streams as it may, or a watch fell too far
    behind reading its events."""


class Unavailable(SchedulerError):
    """Raised when the scheduler cannot serve a call now: it is stopping, or (a write) the
    database of its state does not answer."""


# --- triggers -------------------------------------------------------------------------------


class EventNotParsed(DagyoError):
    """Raised when a message is not a CloudEvent in a content mode dagyo reads."""


class EventRefused(DagyoError):
    """Raised when a CloudEvent is malformed, matches no trigger, or does not bind."""


class Busy(DagyoError):
    """Raised when more events wait than the scheduler holds: the source should retry."""


class FiringFailed(DagyoError):
    """Raised (in a firing's future) when the scheduler refused the flow of a batch.

    Attributes:
        retryable: the refusal may pass later (a quota, no executor, the broker away).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)


# --- deploy ---------------------------------------------------------------------------------
