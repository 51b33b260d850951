"""A small client of the scheduler's gRPC API, translating grpc errors at the boundary.

A user never sees a grpc traceback: an address that does not answer raises
SchedulerUnavailable (naming it and how to start a scheduler), a refused request raises
SchedulerRefused with the scheduler's problem lines, anything else SchedulerError.

The address may list several schedulers sharing one state (``DAGYO_SCHEDULER`` is
``host1:port1,host2:port2``): the client connects to the first that answers within
``CONNECT_TIMEOUT_S`` and passes over the others.

Example:
    >>> with SchedulerClient("localhost:50051") as client:  # doctest: +SKIP
    ...     flow_id = client.submit(Path("examples/hello.json").read_text())
    ...     for event in client.watch(flow_id):
    ...         ...
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn

import grpc

from executor.core.errors import (
    SchedulerDisconnected,
    SchedulerError,
    SchedulerRefused,
    SchedulerStateAway,
    SchedulerUnauthenticated,
    SchedulerUnavailable,
)
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.client.addresses import CONNECT_TIMEOUT_S, ready, scheduler_addresses
from scheduler.client.tlsproblems import tls_problem
from scheduler.errors import STATE_AWAY
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.limits import ENV_MAX_MESSAGE_BYTES, max_message_bytes
from scheduler.tls import call_metadata, client_credentials, client_target

# A unary call on a connected scheduler (submit declares queues and publishes jobs).
CALL_TIMEOUT_S = 60.0
# What gRPC says when a message is over the receiver's limit: "(sent vs. limit)".
_TOO_LARGE = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")

# The codes that mean "the scheduler said no": the details are meant for the user.
# What the scheduler's UNAVAILABLE says when it is up but its broker is not.
BROKER_AWAY = "not connected to the broker"
_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@dataclass(frozen=True)
class Listing:
    """The flows a List call answered.

    Attributes:
        records: the flow records, newest first.
        every_tenant: the caller sees every tenant's flows (an admin, or a scheduler
            running open); a user sees its own tenant's only.
    """

    records: builtins.list[pb.FlowRecord]
    every_tenant: bool


class SchedulerClient:
    """One connection to the scheduler at ``address`` (``host:port``), opened on first use.

    Args:
        address: the scheduler's gRPC address (``https://host:port`` for TLS with the
            system roots; see scheduler.tls for the TLS variables), or several separated
            by ``,``: the first that answers within ``CONNECT_TIMEOUT_S`` is used.
        call_timeout_s: the deadline of each unary call (``watch`` has none).
        token: the bearer token to send; ``DAGYO_TOKEN`` when not given.

    Every method raises:
        SchedulerUnavailable: the address does not answer (none of them does), or the
            connection was lost.
        SchedulerRefused: the scheduler refused the request (an invalid flow, a progdef
            with no executor, an unknown flow id); carries its problem lines.
        SchedulerError: any other failure of the scheduler.
    """

    def __init__(
        self,
        address: str,
        *,
        call_timeout_s: float = CALL_TIMEOUT_S,
        token: str | None = None,
    ) -> None:
        self.addresses = scheduler_addresses(address)
        # The one in use once connected; the first until then.
        self.address = self.addresses[0]
        self._call_timeout_s = call_timeout_s
        # DAGYO_TOKEN (and the TLS variables) unless a token is given, e.g. the dashboard
        # speaking for a browser.
        self._metadata = (("authorization", f"Bearer {token}"),) if token else call_metadata()
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._tls = False

    def __enter__(self) -> SchedulerClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None

    def submit(
        self,
        flow_json: str,
        *,
        source: str = "",
        deadline_s: float = 0.0,
        sets: Sequence[str] = (),
        no_cache: bool = False,
    ) -> str:
        """Submit a flow (Flow JSON v1 text) and return its id.

        Args:
            source: names the flow in error messages, e.g. its file name.
            deadline_s: seconds after which the flow fails; 0 for none.
            sets: consts given at submit, each ``NODE.PORT=JSON``.
            no_cache: run every node, none replayed from the cache.
        """
        request = pb.SubmitRequest(
            flow_json=flow_json,
            source=source,
            deadline_s=deadline_s,
            set=list(sets),
            no_cache=no_cache,
        )
        response = self._call("Submit", request)
        if response.problems or not response.flow_id:
            raise SchedulerRefused(list(response.problems), code="INVALID_ARGUMENT")
        return str(response.flow_id)

    def export_items(self, flow_id: str, export: str) -> Iterator[pb.ExportChunk]:
        """The items kept with one export of a flow, in chunks (see ``ExportChunk``)."""
        request = pb.ExportItemsRequest(flow_id=flow_id, export=export)
        return self._stream("ExportItems", request)

    def cache_list(self) -> builtins.list[pb.CacheEntry]:
        """The cached results the caller's tenant sees, most recently used first."""
        return list(self._call("CacheList", pb.CacheListRequest()).entries)

    def cache_drop(self, selector: str = "") -> builtins.list[pb.CacheEntry]:
        """Remove cached results (``PROGDEF``, ``PROGDEF@VERSION``, ``KEY``; all when empty)
        and return those removed."""
        return list(self._call("CacheDrop", pb.CacheDropRequest(selector=selector)).entries)

    def get(self, flow_id: str) -> pb.FlowRecord:
        """The record of one flow."""
        record: pb.FlowRecord = self._call("Get", pb.GetRequest(flow_id=flow_id))
        return record

    def list(self, *, limit: int = 0) -> builtins.list[pb.FlowRecord]:
        """The newest ``limit`` flows (0: every flow), newest first, fetched page by page."""
        return self.listing(limit=limit).records

    def listing(self, *, limit: int = 0) -> Listing:
        """The newest ``limit`` flows (0: every flow), and whether they span every tenant."""
        records: builtins.list[pb.FlowRecord] = []
        token = ""
        while True:
            want = min(limit - len(records), 100) if limit else 0
            request = pb.ListRequest(limit=want, page_token=token)
            response = self._call("List", request)
            records += response.flows
            token = response.next_page_token
            if not token or (limit and len(records) >= limit):
                return Listing(
                    records=records[:limit] if limit else records,
                    every_tenant=response.every_tenant,
                )

    def cancel(self, flow_id: str) -> pb.FlowRecord:
        """Cancel a flow and return its record afterwards."""
        record: pb.FlowRecord = self._call("Cancel", pb.CancelRequest(flow_id=flow_id))
        return record

    def versions(self) -> builtins.list[pb.ProgdefVersion]:
        """Each progdef version the scheduler knows, with its state and jobs."""
        response: pb.VersionsResponse = self._call("Versions", pb.VersionsRequest())
        return builtins.list(response.versions)

    def catalogue(self) -> pb.CatalogueResponse:
        """The catalogue this caller may use: progdefs, documented types, descriptor set."""
        response: pb.CatalogueResponse = self._call("Catalogue", pb.CatalogueRequest())
        return response

    def triggers(self) -> builtins.list[pb.Trigger]:
        """The triggers the scheduler read, with their last firings."""
        response: pb.TriggersResponse = self._call("Triggers", pb.TriggersRequest())
        return builtins.list(response.triggers)

    def failures(self, flow_id: str = "") -> builtins.list[FailureReport]:
        """The failure reports recorded so far, of one flow or (``""``) of every flow,
        oldest first, fetched page by page."""
        reports: builtins.list[FailureReport] = []
        token = ""
        while True:
            request = pb.FailuresRequest(flow_id=flow_id, page_token=token)
            response = self._call("Failures", request)
            reports += response.failures
            token = response.next_page_token
            if not token:
                return reports

    def watch(self, flow_id: str) -> Iterator[pb.WatchEvent]:
        """Follow a flow live: progress, exports and, last, its end (with no deadline)."""
        yield from self._stream("Watch", pb.WatchRequest(flow_id=flow_id))

    def invoke(self, progdef: str, inputs: Sequence[str] = ()) -> Iterator[pb.InvokeEvent]:
        """Run one progdef on items (each ``PORT=JSON``) as a one-node flow: its flow id,
        then each output item, then its end (with no deadline)."""
        yield from self._stream("Invoke", pb.InvokeRequest(progdef=progdef, input=list(inputs)))

    def _stream(self, method: str, request: Any) -> Iterator[Any]:
        stream = getattr(self._connect(), method)(request, metadata=self._metadata)
        started = False
        try:
            for event in stream:
                started = True
                yield event
        except grpc.RpcError as e:
            self._raise(e, during_stream=started)
        finally:
            stream.cancel()

    def _connect(self) -> Any:
        if self._stub is not None:
            return self._stub
        if len(self.addresses) == 1:
            # No wait for readiness: a call on a new channel connects first and fails fast
            # (UNAVAILABLE) when nothing listens, and a ready-wait polls, adding ~0.2 s to
            # every command.
            self._channel = self._open(self.addresses[0])
        else:
            self._channel = self._first_ready()
        self._stub = scheduler_pb2_grpc.SchedulerStub(self._channel)
        return self._stub

    def _open(self, address: str) -> grpc.Channel:
        credentials = client_credentials(address)
        self._tls = credentials is not None
        self.address = address
        target = client_target(address)
        # Send anything (the scheduler's limit decides, and says so); receive up to ours.
        options = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", max_message_bytes(os.environ)),
        ]
        if credentials is None:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, credentials, options=options)

    def _first_ready(self) -> grpc.Channel:
        """A channel to the first of several addresses that connects, in their order."""
        for address in self.addresses:
            channel = self._open(address)
            if ready(channel, CONNECT_TIMEOUT_S):
                return channel
            channel.close()
        raise SchedulerUnavailable(
            ", ".join(self.addresses),
            f"none answered; each was tried in turn for up to {CONNECT_TIMEOUT_S:g} s",
            "start one with `dagyo up` or `dagyo scheduler`, or set DAGYO_SCHEDULER to the "
            "host:port of schedulers that run (several separated by `,`)",
        )

    def _call(self, method: str, request: Any) -> Any:
        stub = self._connect()
        try:
            return getattr(stub, method)(
                request, timeout=self._call_timeout_s, metadata=self._metadata
            )
        except grpc.RpcError as e:
            too_large = _TOO_LARGE.search(e.details() or "") if isinstance(e, grpc.Call) else None
            if method == "Submit" and too_large:
                size, most = len(request.flow_json.encode()), too_large.group(2)
                raise SchedulerRefused(
                    [
                        f"the flow is {size} bytes, more than the {most} the scheduler accepts "
                        f"in one request ({ENV_MAX_MESSAGE_BYTES} on the scheduler)"
                    ],
                    code="RESOURCE_EXHAUSTED",
                ) from e
            self._raise(e, during_stream=False)

    def _raise(self, error: grpc.RpcError, *, during_stream: bool) -> NoReturn:
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (error.details() if isinstance(error, grpc.Call) else "") or ""
        if code in _REFUSALS:
            raise SchedulerRefused(details.splitlines(), code=code.name) from error
        if code is grpc.StatusCode.UNAUTHENTICATED:
            raise SchedulerUnauthenticated(details) from error
        if code is grpc.StatusCode.UNAVAILABLE and BROKER_AWAY in details:
            raise SchedulerDisconnected(details) from error
        if code is grpc.StatusCode.UNAVAILABLE and details.startswith(STATE_AWAY):
            raise SchedulerStateAway(self.address, details) from error
        if code is grpc.StatusCode.UNAVAILABLE and not during_stream:
            reason, fix = tls_problem(details, tls=self._tls, address=self.address)
            raise SchedulerUnavailable(self.address, reason, fix) from error
        if code is grpc.StatusCode.UNAVAILABLE:
            raise SchedulerUnavailable(self.address, "the connection was lost") from error
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            reason = f"no answer within {self._call_timeout_s:g} s"
            raise SchedulerUnavailable(self.address, reason) from error
        raise SchedulerError(
            f"the scheduler at {self.address} failed: {code.name}: {details}"
        ) from error
