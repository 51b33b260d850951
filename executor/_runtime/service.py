"""The executor: a long-lived process serving one progdef, running many jobs at once.

Threads: the I/O thread (executor.core.amqp) owns the broker connection and runs the mailbox,
the stop consumer, heartbeats and reports; each job runs in a thread of its own; the main
thread waits for signals and drains.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from executor._runtime.flusher import Flusher
from executor._runtime.heartbeat import Heartbeats
from executor._runtime.job import JobRun, StopCause, execute
from executor._runtime.mailbox import Mailbox
from executor._runtime.program import Program, load_program
from executor._runtime.reports import (
    JobReports,
    job_end,
    observe,
    progress,
    refused,
    served_version,
)
from executor._runtime.stream import StreamSettings
from executor._runtime.transport.rabbitmq import ChannelPool, RabbitTransport
from executor._runtime.transport.spread import SpreadPools
from executor.core.amqp import CONNECTION_ERRORS, AmqpThread
from executor.core.constants import (
    EVENTS_EXCHANGE,
    EXECUTOR_METRICS_PORT,
    PROTOBUF_CONTENT_TYPE,
    STOP_EXCHANGE,
    STOPPED_FLOW_MEMORY_S,
    goodbye_key,
    heartbeat_key,
    job_started_key,
    stop_queue,
)
from executor.core.drain import ShutdownSignals
from executor.core.errors import BrokerError
from executor.core.health import ExecutorMetrics, port_is_fixed, serve_health
from executor.core.progdef import Progdef
from executor.core.settings import ExecutorSettings
from executor.core.topology import consume, declare_exchanges
from executor.core.tracing import Tracing
from executor.pb.dagyo.v1.events_pb2 import (
    Event,
    Goodbye,
    Heartbeat,
    JobRef,
    JobStarted,
    Stop,
)
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from executor.pb.dagyo.v1.job_pb2 import Job

log = logging.getLogger("dagyo.executor")


class Executor:
    """Pulls jobs of one progdef from its mailbox and runs up to ``max_jobs`` at once."""

    def __init__(
        self,
        progdef: Progdef,
        settings: ExecutorSettings,
        *,
        stream_settings: StreamSettings | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.progdef = progdef
        # OpenTelemetry: a span per job when OTEL_EXPORTER_OTLP_ENDPOINT is set.
        self.tracing = tracing or Tracing.from_env(f"dagyo-executor-{progdef.name}")
        self.settings = settings
        # The version it serves: its mailbox's, else its progdef's (DAGYO_JOBS elsewhere).
        self.version = served_version(settings.mailbox, progdef)
        self.stream_settings = stream_settings or StreamSettings()
        self.program: Program = load_program(progdef)
        self.program.start()  # init before ready: no job pays for it
        self.metrics = ExecutorMetrics()
        self.metrics.heartbeat_age.set_function(lambda: time.monotonic() - self._last_beat)
        self.runs: dict[tuple[str, str], JobRun] = {}
        self._stopped_flows: dict[str, float] = {}
        # Set when the scheduler retires this executor's progdef version: drain, exit 0.
        self.retired = threading.Event()
        # With --one-job: set once its one job was taken (the mailbox is then drained).
        self.took_job = threading.Event()
        self._flusher = Flusher(linger_s=self.stream_settings.linger_s)
        self._control: BlockingChannel | None = None
        self._last_beat = time.monotonic()
        # Set while its connection is up and set up (it pulls its mailbox): heartbeats go out.
        self._online = threading.Event()
        self._idle = threading.Condition()
        self.mailbox = Mailbox.of(settings, on_job=self._on_job)
        self.io = AmqpThread(
            settings.queue_url,
            name="dagyo-io",
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
        )
        self._channels = ChannelPool(self.io)
        # Past the channels of its own connection, jobs' streams go on further ones.
        self._pools = SpreadPools(self._channels, url=settings.queue_url, on_lost=self._lost)
        self._transport = RabbitTransport(self._pools)
        # Their own thread and connection: no burst of stream work can hold them back.
        self.heartbeats = Heartbeats(
            settings.queue_url,
            routing_key=heartbeat_key(settings.executor_id),
            interval_s=settings.heartbeat_interval_s,
            beat=self._heartbeat,
            on_sent=self._beaten,
        )
        # Heartbeats and started events, which are only worth something fresh, go out
        # without waiting for a confirm; what must arrive (ended, failures) waits for one.
        self._news: BlockingChannel | None = None
        self.health_port: int | None = None
        self.reports = JobReports(
            publish=self._publish_confirmed, free_slot=self.mailbox.job_done, sent=self._report_sent
        )

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, start pulling jobs and serve the health endpoint.

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
        """
        self.io.start()
        self.heartbeats.start()
        if self.settings.metrics_port >= 0:
            server = serve_health(
                self.settings.metrics_port,
                host=self.settings.metrics_host,
                metrics=self.metrics,
                live=lambda: self.io.alive,
                ready=lambda: self.io.connected.is_set() and not self.mailbox.draining,
                fixed=port_is_fixed(self.settings.metrics_port, EXECUTOR_METRICS_PORT),
            )
            self.health_port = server.port

    def run(self, signals: ShutdownSignals) -> int:
        """Serve until a signal, then drain; return the exit status (0 after a drain).

        With ``one_job``, also until its one job ended, or no job came within
        ``one_job_idle_s``.
        """
        idle_until = time.monotonic() + self.settings.one_job_idle_s
        while not signals.drain.wait(0.5 if not self.settings.one_job else 0.1):
            if self.retired.is_set():
                log.info("the scheduler retired mailbox %s: draining", self.settings.mailbox)
                break
            if self.settings.one_job and self._one_job_over(idle_until):
                break
            if not self.io.alive:
                log.error("%s", self.io.failed)
                return 3
        self.drain(force=signals.force)
        return 0

    def _one_job_over(self, idle_until: float) -> bool:
        if self.took_job.is_set():
            with self._idle:
                if self.runs:
                    return False
            log.info("ran its one job: exiting")
            return True
        if time.monotonic() >= idle_until:
            log.info("no job came within %g s of start: exiting", self.settings.one_job_idle_s)
            return True
        return False

    def drain(self, *, force: threading.Event | None = None) -> None:
        """Take no new jobs, let the running ones finish, then close.

        Jobs still running after ``drain_grace_s`` (or when ``force`` is set) are stopped
        and reported as panics saying so.
        """
        log.info("draining: %d jobs running", len(self.runs))
        try:
            self.io.call(self.mailbox.drain)
        except Exception as e:  # broker gone: nothing to give back, jobs end on their own
            log.warning("could not cancel the mailbox consumer: %s", e)
        deadline = time.monotonic() + self.settings.drain_grace_s
        force = force or threading.Event()
        with self._idle:
            while self.runs and time.monotonic() < deadline and not force.is_set():
                self._idle.wait(0.2)
            remaining = list(self.runs.values())
        for run in remaining:
            why = (
                "a second SIGTERM"
                if force.is_set()
                else (f"the drain grace period of {self.settings.drain_grace_s:g} s")
            )
            run.request_stop(f"the executor was shutting down and stopped this job after {why}")
        with self._idle:
            end = time.monotonic() + 10
            while self.runs and time.monotonic() < end:
                self._idle.wait(0.2)
        self.heartbeats.stop()  # before goodbye: no heartbeat may follow it
        self._goodbye()
        self._pools.close()
        self.io.close()
        self.tracing.shutdown()
        log.info("drained")

    def _goodbye(self) -> None:
        """Tell the scheduler at once that this executor pulls its mailbox no more."""
        goodbye = Goodbye(executor=self.settings.executor_id, mailbox=self.settings.mailbox)
        event = Event(time=time.time(), goodbye=goodbye)
        key = goodbye_key(self.settings.executor_id)
        try:
            self.io.call(lambda: self._publish(EVENTS_EXCHANGE, key, event))
        except Exception as e:  # broker gone: the heartbeat timeout tells the scheduler
            log.warning("could not say goodbye: %s", e)

    # --- I/O thread ------------------------------------------------------------------------

    def _on_connect(self, connection: pika.BlockingConnection) -> None:
        control = connection.channel()
        declare_exchanges(control)
        # Confirms: a failure report or job-ended event is only "sent" once the broker has it.
        control.confirm_delivery()
        stops = stop_queue(self.settings.executor_id)
        # One stop consumer per executor process, whatever the number of jobs.
        control.queue_declare(stops, exclusive=True, auto_delete=True)
        control.queue_bind(stops, STOP_EXCHANGE)
        consume(control, stops, Stop, self._on_stop, auto_ack=True)
        self._control = control
        self._news = connection.channel()
        self._channels.clear()
        self._channels.fill()
        self.mailbox.open(connection)
        self._send_reports()  # job ends the lost connection did not carry
        self._housekeep(connection)
        self._online.set()
        self.heartbeats.now()  # the scheduler hears at once which mailbox it pulls

    def _on_disconnect(self, error: Exception) -> None:
        self._online.clear()
        self._control = None
        self._news = None
        self._channels.clear()
        self.mailbox.lost()
        self._lost(None, f"broker node {self.io.lost_node} ({error})")

    def _lost(self, stops: list[threading.Event] | None, what: str) -> None:
        """Stop the jobs whose streams were on a lost connection (``stops``; None: all)."""
        lost = None if stops is None else {id(stop) for stop in stops}
        for run in [r for r in list(self.runs.values()) if lost is None or id(r.stop) in lost]:
            run.request_stop(f"the executor lost its connection to {what}", cause=StopCause.BROKER)

    def _publish(
        self, exchange: str, routing_key: str, message: Any, *, confirm: bool = True
    ) -> None:
        channel = self._control if confirm else self._news
        if channel is None or not channel.is_open:
            log.warning("not connected; dropped a %s", message.DESCRIPTOR.full_name)
            return
        properties = pika.BasicProperties(
            content_type=PROTOBUF_CONTENT_TYPE, type=message.DESCRIPTOR.full_name
        )
        channel.basic_publish(exchange, routing_key, message.SerializeToString(), properties)

    def _heartbeat(self) -> Event | None:
        """The heartbeat to send now (heartbeat thread); None while disconnected."""
        if not self._online.is_set():
            return None
        heartbeat = Heartbeat(
            executor=self.settings.executor_id,
            progdef=self.progdef.name,
            version=self.version,
            # A copy: job threads add and remove runs meanwhile.
            jobs=[progress(run, self.metrics) for run in list(self.runs.values())],
            draining=self.mailbox.draining,
            mailbox=self.settings.mailbox,
            slots=self.settings.max_jobs,
        )
        return Event(time=time.time(), heartbeat=heartbeat)

    def _beaten(self) -> None:
        self._last_beat = time.monotonic()

    def _housekeep(self, connection: pika.BlockingConnection) -> None:
        if not self.io.is_current(connection):
            return  # a timer of an old connection: the new one runs its own
        self._forget_old_stops()
        if len(self.reports):
            self._send_reports()
        connection.call_later(
            self.settings.heartbeat_interval_s, lambda: self._housekeep(connection)
        )

    def _on_stop(self, _channel: Any, _method: Any, _properties: Any, stop: Stop) -> None:
        if stop.retire_mailbox:
            if stop.retire_mailbox == self.settings.mailbox:
                self.retired.set()
            return
        self._stopped_flows[stop.flow_id] = time.monotonic()
        for (flow_id, _), run in list(self.runs.items()):
            if flow_id == stop.flow_id:
                run.stop_for_flow(stop.reason)

    def _forget_old_stops(self) -> None:
        horizon = time.monotonic() - STOPPED_FLOW_MEMORY_S
        for flow_id in [f for f, t in self._stopped_flows.items() if t < horizon]:
            del self._stopped_flows[flow_id]

    def _on_job(self, descriptor: Job) -> None:
        if descriptor.flow_id in self._stopped_flows:
            log.info("dropped job %s/%s: its flow was stopped", descriptor.flow_id, descriptor.node)
            self.mailbox.job_done()
            return
        run = JobRun(descriptor)
        refusal = refused(descriptor, self.progdef.name, self.version, self.settings.mailbox)
        if refusal:
            log.error("refused job %s/%s: %s", descriptor.flow_id, descriptor.node, refusal)
            self._ended(run, refusal=refusal)
            return
        if descriptor.published:
            self.metrics.queue_wait.observe(max(0.0, time.time() - descriptor.published))
        run.span = self.tracing.start_job(descriptor, executor=self.settings.executor_id)
        with self._idle:
            self.runs[run.key] = run
        if self.settings.one_job:
            # Its one job: take no other, now or after it ends.
            self.took_job.set()
            self.mailbox.drain()
        self.metrics.jobs_running.set(len(self.runs))
        job = JobRef(flow_id=descriptor.flow_id, node=descriptor.node)
        started = JobStarted(job=job, executor=self.settings.executor_id)
        event = Event(time=time.time(), started=started)
        self._publish(EVENTS_EXCHANGE, job_started_key(descriptor.flow_id), event, confirm=False)
        threading.Thread(
            target=self._job_thread,
            args=(run,),
            daemon=True,
            name=f"job-{descriptor.flow_id}-{descriptor.node}",
        ).start()

    def _job_thread(self, run: JobRun) -> None:
        failure = execute(
            run,
            lambda: self.program,
            self._transport,
            flusher=self._flusher,
            settings=self.stream_settings,
            executor_id=self.settings.executor_id,
        )
        self._ended(run, failure)

    def _ended(
        self, run: JobRun, failure: FailureReport | None = None, *, refusal: str = ""
    ) -> None:
        """Count a job's end and report it (any thread): see executor.reports."""
        end = job_end(run, failure, executor_id=self.settings.executor_id, refusal=refusal)
        try:
            observe(end, run, self.metrics, self.tracing)
        except Exception:  # metrics or tracing must never keep a job's end unreported
            log.exception("could not count the end of job %s/%s", *run.key)
        self.reports.add(end)
        self.io.submit(self._send_reports)

    def _send_reports(self) -> None:
        """Send the job ends the broker has not confirmed yet (I/O thread)."""
        try:
            self.reports.send()
        except CONNECTION_ERRORS:
            raise  # the I/O thread reconnects, then sends them again
        except (BrokerError, pika.exceptions.AMQPError) as e:  # a nack, a channel closed
            log.warning("%d job ends not reported yet (%s): sent again later", len(self.reports), e)

    def _report_sent(self, key: tuple[str, str]) -> None:
        with self._idle:
            self.runs.pop(key, None)
            self._idle.notify_all()
        self.metrics.jobs_running.set(len(self.runs))

    def _publish_confirmed(self, exchange: str, routing_key: str, message: Any) -> None:
        """Publish and wait for the broker's confirm (I/O thread).

        Raises:
            BrokerError: while not connected; pika's errors when the broker refused it.
        """
        channel = self._control
        if channel is None or not channel.is_open:
            raise BrokerError("not connected to the broker")
        self._publish(exchange, routing_key, message)
