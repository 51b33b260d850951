"""The Celery contender: the hello flow's three steps as a Celery user would write them.

One chain per flow, ``source.s(3) | greet.s() | sink.s()``: source makes the names name-0 …
name-2, greet greets each, sink (as the hello flow's void sink, but handing the greetings
back, since a Celery client only sees what the chain's last task returns) returns them. A
Celery app on the same RabbitMQ as DAGYO_QUEUE, in a vhost of its own (made and deleted
here with rabbitmqctl), ``result_backend = "rpc://"`` (results as messages to the
client's reply queue, the usual choice on a RabbitMQ-only setup) and one prefork worker,
``--concurrency`` the machine's cores, started and stopped here; everything else is
Celery's default. Needs Celery: ``pip install -e '.[bench]'``.

bench/many_flows.py and bench/latency.py run it beside dagyo (``celery_…`` figures);
alone it prints one JSON line of chains/s sustained for --seconds:

    {"bench": "celery", "seconds": …, "chains": …, "chains_per_s": …,
     "cpu_ms_per_chain": {"broker": …, "client": …, "worker": …, "total": …}, …}

Usage:
    python bench/celery_chain.py --seconds 20
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from celery import Celery, chain

HERE = Path(__file__).resolve().parent
ENV_BROKER = "DAGYO_BENCH_CELERY_BROKER"
NAMES = 3

app = Celery("celery_chain", broker=os.environ.get(ENV_BROKER, "amqp://"), backend="rpc://")
app.conf.worker_hijack_root_logger = False


@app.task
def source(count: int) -> list[str]:
    return [f"name-{i}" for i in range(count)]


@app.task
def greet(names: list[str]) -> list[str]:
    return ["hello " + name for name in names]


@app.task
def sink(greetings: list[str]) -> list[str]:
    return greetings


def hello() -> Any:
    """One chain sent: its AsyncResult (of the last task)."""
    return chain(source.s(NAMES), greet.s(), sink.s()).apply_async()


def rabbitmqctl(*args: str) -> str:
    """rabbitmqctl, asked of the first local node DAGYO_QUEUE names (as common.py does)."""
    from common import broker_nodes

    nodes = [name for _, name in broker_nodes() if name]
    return subprocess.run(
        ["rabbitmqctl", *(["-n", nodes[0]] if nodes else []), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the prefork pool's), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


class CeleryContender:
    """A vhost of its own on the broker of ``queue_url`` and a prefork worker on it.

    Use as a context manager: it makes the vhost and starts the worker (waiting until a
    chain has gone through), and on exit stops the worker and deletes the vhost.
    """

    def __init__(self, queue_url: str, concurrency: int | None = None) -> None:
        self.vhost = f"dagyo-bench-celery-{uuid.uuid4().hex[:8]}"
        parts = urllib.parse.urlsplit(queue_url.split(";")[0])
        self.user = urllib.parse.unquote(parts.username or "guest")
        self.broker = urllib.parse.urlunsplit(
            parts._replace(path="/" + urllib.parse.quote(self.vhost, ""))
        )
        self.concurrency = concurrency or os.cpu_count() or 1
        self.worker: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CeleryContender:
        rabbitmqctl("add_vhost", self.vhost)
        try:
            rabbitmqctl("set_permissions", "-p", self.vhost, self.user, ".*", ".*", ".*")
            app.conf.broker_url = self.broker
            os.environ[ENV_BROKER] = self.broker
            self.worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "celery_chain",
                    "worker",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(self.concurrency),
                    "--loglevel",
                    "WARNING",
                ],
                cwd=HERE,
                stdout=subprocess.DEVNULL,  # its banner; warnings and errors go to stderr
                env={**os.environ, "PYTHONPATH": str(HERE)},
                start_new_session=True,
            )
            for _ in range(20):  # warm: the worker's pool, the client's reply queue
                self.once(timeout=120)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self.worker is not None:
            self.worker.send_signal(signal.SIGTERM)  # a warm shutdown
            try:
                self.worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()
            self.worker = None
        app.pool.force_close_all()
        rabbitmqctl("delete_vhost", self.vhost)

    def pids(self) -> list[int | str]:
        """The worker's processes: its main one and its pool's."""
        assert self.worker is not None
        return [self.worker.pid, *children(self.worker.pid)]

    @staticmethod
    def once(timeout: float = 60) -> float:
        """One chain, sent -> done, in seconds."""
        started = time.perf_counter()
        greetings = hello().get(timeout=timeout)
        seconds = time.perf_counter() - started
        assert greetings == [f"hello name-{i}" for i in range(NAMES)], greetings
        return seconds

    @staticmethod
    def sustain(seconds: float, in_flight: int = 64) -> tuple[int, float]:
        """Chains sent for ``seconds`` by one client thread that keeps ``in_flight`` of them
        sent and not yet done: it waits for the oldest one's result and sends the next.

        Returns:
            how many chains finished, and the seconds from the first sent to the last done.
        """
        started = time.perf_counter()
        deadline = started + seconds
        window = collections.deque(hello() for _ in range(in_flight))
        done = 0
        while window:
            assert len(window.popleft().get(timeout=300)) == NAMES
            done += 1
            if time.perf_counter() < deadline:
                window.append(hello())
        return done, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--in-flight", type=int, default=64, help="chains sent, not yet done")
    parser.add_argument("--chains", type=int, default=0, help="then time this many one by one")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from common import QUEUE_URL, CpuMeter, broker_pids, emit

    with CeleryContender(QUEUE_URL) as celery:
        broker: list[int | str] = list(broker_pids())
        cpu = CpuMeter({"broker": broker, "client": ["self"], "worker": celery.pids()})
        cpu.start()
        chains, seconds = celery.sustain(args.seconds, args.in_flight)
        cpu.stop()
        latency = [celery.once() for _ in range(args.chains)]
    figures: dict[str, Any] = {
        "bench": "celery",
        "seconds": round(seconds, 2),
        "chains": chains,
        "chains_per_s": round(chains / seconds, 1),
        "cpu_ms_per_chain": cpu.per_unit_ms(chains),
        "cores_busy": round(sum(cpu.used.values()) / seconds, 2),
        "concurrency": celery.concurrency,
    }
    if latency:
        figures["sent_done_p50_ms"] = round(statistics.median(latency) * 1000, 1)
    emit(figures)


if __name__ == "__main__":
    main()
