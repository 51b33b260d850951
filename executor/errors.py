"""The one error tree of dagyo, rooted at DagyoError.

The scheduler and the CLI import these from here: the executor side owns them because
every progdef image installs it, and the scheduler may depend on the executor, not the
reverse.
"""

from __future__ import annotations

from collections.abc import Sequence


class DagyoError(Exception):
    """Raised when dagyo itself reports a problem; the message is meant for a person."""


class ProgdefInvalid(DagyoError):
    """Raised when a progdef.json file is malformed; carries every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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


class FlowInvalid(DagyoError):
    """Raised when a flow fails its checks; carries every problem found, one a line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ProgdefNotFound(DagyoError):
    """Raised when a name does not match any progdef of the catalogue."""


class TypeMismatch(DagyoError):
    """Raised when a message's typename differs from the one its port declares."""


class UnknownType(DagyoError):
    """Raised when a typename is not a protobuf message this process knows."""


class BrokerError(DagyoError):
    """Raised when the broker refuses or fails an operation."""


class BrokerUnavailable(BrokerError):
    """Raised when the broker cannot be reached at all."""

    def __init__(self, url: str, reason: str = "") -> None:
        self.url = url
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"cannot reach the broker at {redact_url(url)}{detail}: start RabbitMQ "
            "(e.g. `rabbitmq-server -detached`) or set DAGYO_QUEUE to its amqp:// URL"
        )


class BrokerRefused(BrokerUnavailable):
    """Raised when the broker answers but refuses the connection (credentials, vhost)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        BrokerError.__init__(
            self, f"the broker at {redact_url(url)} refused the connection: {reason}"
        )


class SchedulerDisconnected(BrokerUnavailable):
    """Raised when the scheduler answers but refuses a call while its broker is away."""

    def __init__(self, message: str) -> None:
        self.url = ""
        self.reason = message
        BrokerError.__init__(self, message)


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


class SchedulerUnavailable(DagyoError):
    """Raised when the scheduler's gRPC address does not answer."""

    def __init__(self, address: str, reason: str = "", fix: str = "") -> None:
        self.address = address
        detail = f" ({reason})" if reason else ""
        fix = fix or (
            "start it with `dagyo up` or `dagyo scheduler`, or set DAGYO_SCHEDULER to its host:port"
        )
        super().__init__(f"cannot reach the scheduler at {address}{detail}: {fix}")


class DecodeError(DagyoError):
    """Raised when an item on a stream does not decode as its port's typename."""


class StreamCorrupt(DecodeError):
    """Raised when a stream's frames are out of order, of another typename, or past its end."""


class Stopped(DagyoError):
    """Raised inside a job when its flow was stopped; catch it to clean up, then re-raise."""


class Panic(DagyoError):
    """Raised when a job failed fatally; carries the failure report's fields."""

    def __init__(
        self, *, node: str, progdef: str, error: str, traceback: str = "", executor: str = ""
    ) -> None:
        self.node = node
        self.progdef = progdef
        self.error = error
        self.traceback = traceback
        self.executor = executor
        super().__init__(f"node {node} (progdef {progdef}) panicked: {error}")


def redact_url(url: str) -> str:
    """Return url with any password replaced by ``***``, for messages and logs.

    Never parses the URL (a malformed one must not raise, nor leak): whatever lies between
    ``://`` and the last ``@`` is the user information, of which only the user name is kept.
    A password holding an unencoded ``#``, ``/``, ``?`` or ``@`` is therefore hidden too.
    """
    scheme, separator, rest = url.rpartition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    hidden = f"{user}:***" if colon else user
    return f"{scheme}{separator}{hidden}@{host}"


class SchedulerError(DagyoError):
    """Raised when the scheduler fails a request for a reason of its own."""


class SchedulerUnauthenticated(SchedulerError):
    """Raised when the scheduler requires a token and the call had none, or a bad one."""


class SchedulerRefused(SchedulerError):
    """Raised when the scheduler refuses a request; carries its problem lines, one a line."""

    def __init__(self, problems: Sequence[str], *, code: str = "") -> None:
        self.problems = list(problems) or ["the scheduler refused the request"]
        self.code = code
        super().__init__("\n".join(self.problems))
