"""One output stream of a cacheable node recorded while its flow runs (docs/cache.md),
held in memory in the layout the store keeps it: each item a 4-byte big-endian length and
its bytes, and the queues such streams are read from."""

from __future__ import annotations

import struct
from collections.abc import Mapping

from executor.core.constants import flow_queue
from scheduler.constants import ENV_CACHE_BYTES, ENV_CACHE_MAX_BYTES
from scheduler.flow.model import CheckedFlow, Endpoint

_LENGTH = struct.Struct(">I")


class Recording:
    """One output stream being recorded, in the layout the store keeps it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.items = 0
        self.size = 0
        self.dropped = ""  # why it is not cached, once it is not

    def add(self, items: list[bytes], limit: int, room: int) -> int:
        """Hold the items, within ``limit`` bytes for the stream and ``room`` for every
        recording the scheduler holds; return the bytes it holds more (or less: dropped)."""
        data = b"".join(_LENGTH.pack(len(item)) + item for item in items)
        if self.size + len(data) > limit or len(data) > room:
            self.dropped = (
                f"past {ENV_CACHE_MAX_BYTES} ({limit} bytes)"
                if self.size + len(data) > limit
                else f"the scheduler holds {ENV_CACHE_BYTES} of recordings already"
            )
            return self.drop()
        self.chunks.append(data)
        self.items += len(items)
        self.size += len(data)
        return len(data)

    def drop(self) -> int:
        """Forget the items held; return minus their bytes."""
        held, self.chunks, self.size = self.size, [], 0
        return -held


def recorded(checked: CheckedFlow, keys: Mapping[str, str]) -> list[Endpoint]:
    """The cacheable outputs recorded from a queue of their own: those without an export,
    in the flow's order."""
    return [
        Endpoint(node, port)
        for node in checked.order
        if node in keys
        for port in sorted(checked.progdefs[node].outputs)
        if not checked.exports_of(Endpoint(node, port))
    ]


def recording_queue(flow_id: str, output: Endpoint) -> str:
    """The recording queue of a cacheable output (docs/cache.md)."""
    return flow_queue(flow_id, f"record.{output.node}.{output.port}")
