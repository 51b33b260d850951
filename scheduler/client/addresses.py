"""Several schedulers sharing one state, as clients name them: ``DAGYO_SCHEDULER`` (or
``--scheduler``) lists their addresses separated by ``,``, and a client connects to the
first that answers (:class:`scheduler.client.api.SchedulerClient`)."""

from __future__ import annotations

import threading

import grpc

# Of several addresses, one that is not connected this soon is passed over for the next
# (one that refuses the connection is passed over at once).
CONNECT_TIMEOUT_S = 3.0
# What separates the addresses of several schedulers in DAGYO_SCHEDULER.
ADDRESS_SEPARATOR = ","


def scheduler_addresses(address: str) -> list[str]:
    """The addresses ``DAGYO_SCHEDULER`` (or ``--scheduler``) lists, in order.

    Several schedulers sharing one state are written ``host1:port1,host2:port2``; spaces
    around each are dropped.

    Example:
        >>> scheduler_addresses("a:50051, b:50051")
        ['a:50051', 'b:50051']
    """
    addresses = [part.strip() for part in address.split(ADDRESS_SEPARATOR)]
    return [a for a in addresses if a] or [address.strip()]


def ready(channel: grpc.Channel, timeout_s: float) -> bool:
    """Connect ``channel``: True once it is ready, False when its first attempt fails (the
    address refuses, a TLS handshake fails) or ``timeout_s`` passes."""
    outcome: list[bool] = []
    settled = threading.Event()

    def seen(state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            outcome.append(True)
        elif state in (
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        ):
            outcome.append(False)
        else:
            return
        settled.set()

    channel.subscribe(seen, try_to_connect=True)
    try:
        settled.wait(timeout_s)
    finally:
        channel.unsubscribe(seen)
    return bool(outcome) and outcome[0]
