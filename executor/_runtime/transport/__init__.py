"""Transports: how frames move between jobs (``memory`` in one process, ``rabbitmq``)."""

from executor._runtime.transport.base import FrameSink, Streams, Transport

__all__ = ["FrameSink", "Streams", "Transport"]
