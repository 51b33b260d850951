"""Jobs' channels spread over several connections once one has no channel to spare.

A running job holds one AMQP channel, and a connection has at most ``channel_max`` of
them (negotiated when it opens: the fewer of what the broker allows, 2047 on RabbitMQ
unless configured otherwise, and what the client asks, ``?channel_max=64`` in the broker
URL; for a broker set to fewer than 2047, say so in the URL too). :class:`SpreadPools`
gives each new job the pool of the first connection with room for one more job and, when
none has, opens another connection (its own I/O thread, as pika's BlockingConnection
needs) for the next jobs. The executor's own connection comes first; the others only carry
jobs' streams.

Room on a connection: ``channel_max`` less the channels others hold on it (``reserved``:
the executor's control, news and mailbox channels), less the clean channels its pool
keeps ready for the next jobs, and at most JOBS_PER_CONNECTION.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pika

from executor._runtime.transport.rabbitmq import CHANNELS_KEPT, ChannelPool
from executor.core.amqp import AmqpThread
from executor.core.connection import connection_parameters

log = logging.getLogger("dagyo.executor")

# Channels of the executor's own connection held by others than jobs (control, news,
# mailbox), with a margin.
RESERVED_CHANNELS = 8
# What RabbitMQ allows unless configured otherwise (its channel_max).
BROKER_CHANNEL_MAX = 2047
# Jobs per connection at most, whatever its channels: one I/O thread runs every call of
# its jobs one after another, each publish waiting for its confirm. 10 000 idle jobs
# given their end-of-stream at once (bench/many_jobs.py --idle), on a loaded machine: on
# 5 connections 937 calls went unanswered past their 30 s, on 20 connections 147 (none
# when the load was lighter).
JOBS_PER_CONNECTION = 500


def job_room(url: str, *, reserved: int, ready: int) -> int:
    """How many jobs may hold a channel of one connection to ``url`` at once (at least 1)."""
    asked = min(parameters.channel_max for parameters in connection_parameters(url))
    channel_max = min(asked or BROKER_CHANNEL_MAX, BROKER_CHANNEL_MAX)
    kept = min(CHANNELS_KEPT, channel_max // 4)
    return max(1, min(JOBS_PER_CONNECTION, channel_max - reserved - ready - kept))


class SpreadPools:
    """The channel pools of jobs, over the executor's connection and more as needed.

    Args:
        first: the pool of the executor's own connection.
        url: the broker URL the further connections go to.
        on_lost: called on a further connection's I/O thread when it is lost, with the
            stop signals of the jobs whose streams were on it and the error.
        reserved: channels of the first connection held by others than jobs.
    """

    def __init__(
        self,
        first: ChannelPool,
        *,
        url: str,
        on_lost: Callable[[list[threading.Event], str], None],
        reserved: int = RESERVED_CHANNELS,
    ) -> None:
        self._url = url
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._pools = [first]
        self._reserved = {id(first): reserved}
        # The stop signals of the jobs on each pool (by the pool's id).
        self._jobs: dict[int, dict[int, threading.Event]] = {id(first): {}}
        self._rooms: dict[int, int] = {}

    @property
    def connections(self) -> int:
        """How many connections carry jobs' streams (the executor's own included)."""
        return len(self._pools)

    def take(self, stop: threading.Event) -> ChannelPool:
        """The pool the job stopped by ``stop`` takes its channel from.

        Raises:
            BrokerUnavailable: when a further connection is needed and cannot be opened.
        """
        with self._lock:
            for pool in self._pools:
                jobs = self._jobs[id(pool)]
                if len(jobs) < self._room(pool):
                    jobs[id(stop)] = stop
                    return pool
            pool = self._open()  # under the lock: one new connection, not one per job
            self._jobs[id(pool)][id(stop)] = stop
            return pool

    def release(self, pool: ChannelPool, stop: threading.Event) -> None:
        """The job stopped by ``stop`` ended: its place on ``pool``'s connection is free."""
        with self._lock:
            self._jobs.get(id(pool), {}).pop(id(stop), None)

    def close(self) -> None:
        """Close the further connections (the executor closes its own)."""
        with self._lock:
            further, self._pools = self._pools[1:], self._pools[:1]
        for pool in further:
            pool.io.close()

    def _room(self, pool: ChannelPool) -> int:
        room = self._rooms.get(id(pool))
        if room is None:
            reserved = self._reserved.get(id(pool), 0)
            room = self._rooms[id(pool)] = job_room(self._url, reserved=reserved, ready=pool.wanted)
        return room

    def _open(self) -> ChannelPool:
        number = len(self._pools)
        pool: ChannelPool

        def connected(_connection: pika.BlockingConnection) -> None:
            pool.clear()

        def lost(error: Exception) -> None:
            pool.clear()
            with self._lock:
                stops = list(self._jobs.get(id(pool), {}).values())
            if stops:
                self._on_lost(stops, f"broker node {io.lost_node} ({error})")

        io = AmqpThread(
            self._url, name=f"dagyo-io-{number}", on_connect=connected, on_disconnect=lost
        )
        pool = ChannelPool(io, ready=self._pools[0].wanted)
        io.start()
        self._pools.append(pool)
        self._jobs[id(pool)] = {}
        log.info("jobs' streams now spread over %d connections", len(self._pools))
        return pool
