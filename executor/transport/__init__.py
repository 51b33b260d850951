"""Transports: how frames move between jobs (``memory`` in one process, ``rabbitmq``)."""

from executor.transport.base import FrameSink, Streams, Transport

__all__ = ["FrameSink", "Streams", "Transport"]
