"""A local cluster on one host: one executor process per progdef and the scheduler in-process.

``dagyo up`` runs one; a benchmark or a script can too::

    with LocalCluster(progdefs_dir=Path("progdefs"), queue_url=url) as cluster:
        with SchedulerClient(cluster.address) as client:
            flow_id = client.submit(flow_json)

The executors are ``python -m executor PROGDEF_DIR`` processes on the broker at
``queue_url``; stopping the cluster drains them (SIGTERM) before it stops the scheduler.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from executor.core.constants import DEFAULT_QUEUE_URL, ENV_OBJECTS
from executor.core.errors import DagyoError
from executor.core.offload import default_objects_url
from executor.core.progdef import Folders, Progdef, catalogue_folders, load_catalogue
from executor.core.topology import delete_topology
from executor.core.tracing import Tracing
from scheduler.constants import HEARTBEAT_TIMEOUT_S
from scheduler.local_processes import ExecutorProcesses, check_node_runtime, mailbox_consumers
from scheduler.local_processes import private_catalogue as private_catalogue
from scheduler.local_schedulers import SchedulerProcesses
from scheduler.service.config import MEMORY, SchedulerSettings, default_progdefs_dir
from scheduler.service.server import Scheduler

log = logging.getLogger("dagyo.local")


# How long start() waits for every mailbox to have a consumer.
READY_TIMEOUT_S = 60.0
# How often wait_ready() asks the broker for the mailboxes' consumers.
READY_POLL_S = 0.2


class LocalCluster:
    """Executor processes for a catalogue, and the scheduler service in this process.

    Args:
        progdefs_dir: the catalogue folder, or its folders; by default
            :func:`default_progdefs_dir`.
        queue_url: the broker the executors and the scheduler use.
        listen: where the scheduler serves gRPC, ``host:port``; port 0 picks a free one
            (see :attr:`address`).
        executors_per_progdef: executor processes started for each progdef.
        heartbeat_timeout_s: a started job whose executor has been silent this long fails
            its flow.
        state_path: where the scheduler keeps flow records (a SQLite file, ``:memory:``
            for none, or a PostgreSQL URL).
        extra_env: added to each executor's environment (``DAGYO_QUEUE`` and
            ``DAGYO_JOBS`` are always the cluster's). Of this process's own environment an
            executor gets only the ``DAGYO_*`` settings, what a process needs (``PATH``,
            ``HOME``, ``LANG``, ``PYTHON*``…), its progdef's ``env`` and its declared
            ``secrets``.
        log_dir: when set, each executor runs in this folder and writes its output to
            ``executor-<progdef>.log`` there (see :meth:`executor_log`), instead of
            inheriting stdout and stderr.

    Raises:
        ProgdefInvalid: when the catalogue folder is missing or malformed.
        DagyoError: when a scheduler setting holds a bad value.

    Attributes:
        settings: the scheduler's :class:`SchedulerSettings`.
        catalogue: the progdefs, by name.
        scheduler: the scheduler service once started, else None.
    """

    def __init__(
        self,
        *,
        progdefs_dir: Folders | None = None,
        queue_url: str = DEFAULT_QUEUE_URL,
        listen: str = "127.0.0.1:0",
        executors_per_progdef: int = 1,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
        state_path: str = MEMORY,
        extra_env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        settings = SchedulerSettings(
            queue_url=queue_url,
            address=listen,
            state_path=state_path,
            progdefs=(
                catalogue_folders(progdefs_dir)
                if progdefs_dir is not None
                else default_progdefs_dir()
            ),
            heartbeat_timeout_s=heartbeat_timeout_s,
            # Several local clusters (or a cluster and `dagyo scheduler`) may share a host.
            metrics_port=0,
        )
        self._setup(settings, executors_per_progdef, extra_env, log_dir)

    @classmethod
    def from_settings(
        cls,
        settings: SchedulerSettings,
        *,
        executors_per_progdef: int = 1,
        extra_env: Mapping[str, str] | None = None,
        schedulers: int = 1,
    ) -> LocalCluster:
        """A cluster whose scheduler runs with ``settings`` as they are (``dagyo up``);
        with ``schedulers`` above 1, the others are processes on the next ports (see
        scheduler.local_schedulers), which needs a PostgreSQL state.

        Raises:
            ProgdefInvalid: when the catalogue folder is missing or malformed.
            DagyoError: several schedulers on a SQLite state.
        """
        cluster = cls.__new__(cls)
        cluster._setup(settings, executors_per_progdef, extra_env, schedulers=schedulers)
        return cluster

    def _setup(
        self,
        settings: SchedulerSettings,
        executors_per_progdef: int,
        extra_env: Mapping[str, str] | None,
        log_dir: Path | None = None,
        *,
        schedulers: int = 1,
    ) -> None:
        if executors_per_progdef < 1:
            raise DagyoError(
                f"executors_per_progdef must be 1 or more, got {executors_per_progdef}"
            )
        if not settings.objects_url:
            # Offloaded items go to a folder of the user's cache, shared by the scheduler
            # and every executor of the cluster (they run on this host).
            url = os.environ.get(ENV_OBJECTS) or default_objects_url()
            settings = dataclasses.replace(settings, objects_url=url)
        extra_env = {ENV_OBJECTS: settings.objects_url, **(extra_env or {})}
        self.settings = settings
        self.catalogue: dict[str, Progdef] = load_catalogue(settings.progdefs)
        self.executors_per_progdef = executors_per_progdef
        self.extra_env: dict[str, str] = dict(extra_env or {})
        self.log_dir = log_dir
        self.scheduler: Scheduler | None = None
        self.scheduler_processes = SchedulerProcesses(settings, schedulers - 1)
        # The mailboxes an executor of this cluster consumed: the others never started.
        self._served: set[str] = set()
        self._executors = ExecutorProcesses(
            queue_url=settings.queue_url, extra_env=self.extra_env, log_dir=log_dir
        )

    @property
    def address(self) -> str:
        """The scheduler's gRPC ``host:port``: once started, with the port it picked for 0."""
        return self.scheduler.address if self.scheduler is not None else self.settings.address

    @property
    def executors(self) -> dict[str, list[subprocess.Popen[bytes]]]:
        """The executor processes started so far, by progdef name."""
        return self._executors.by_name()

    # --- start -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the executors, wait until every mailbox has a consumer, start the scheduler.

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
            DagyoError: when an executor exits before it consumes its mailbox, or some
                mailbox still has no consumer after ``READY_TIMEOUT_S``; the executors
                started are stopped first.
        """
        from executor.core.amqp import connect

        check_node_runtime(self.catalogue.values())
        connect(self.settings.queue_url).close()  # fail fast, before any process starts
        try:
            for progdef in self.catalogue.values():
                for _ in range(self.executors_per_progdef):
                    self.start_executor(progdef)
            waiting = self.wait_ready()
            exited = self.exited()
            if exited:
                progdef, process = exited[0]
                raise DagyoError(
                    f"executor {progdef.name} (pid {process.pid}) exited with status "
                    f"{process.returncode} before it consumed mailbox {progdef.mailbox}"
                )
            if waiting:
                raise DagyoError(
                    f"still no executor consuming {', '.join(waiting)} after {READY_TIMEOUT_S:g} s"
                )
            self.start_scheduler()
        except BaseException:
            self.stop()
            raise

    def start_executor(self, progdef: Progdef) -> subprocess.Popen[bytes]:
        """Start one more executor process for ``progdef``; it inherits stdout and stderr."""
        return self._executors.start(progdef)

    def executor_log(self, name: str) -> str:
        """What the executors of progdef ``name`` wrote so far (with ``log_dir`` set)."""
        return self._executors.log(name)

    def delete_mailboxes(self) -> None:
        """Delete the catalogue's mailboxes (once its executors are gone)."""
        self._delete([progdef.mailbox for progdef in self.catalogue.values()])

    def supervise(
        self,
        *,
        on_exit: Callable[[Progdef, subprocess.Popen[bytes], float], None] | None = None,
        on_start: Callable[[Progdef, subprocess.Popen[bytes]], None] | None = None,
    ) -> None:
        """Start again, after its backoff, each executor that exited; call it now and then.

        ``on_exit`` and ``on_start`` are as for
        :meth:`~scheduler.local_processes.ExecutorProcesses.supervise`.
        """
        self._executors.supervise(on_exit=on_exit, on_start=on_start)

    def wait_ready(
        self, *, timeout_s: float = READY_TIMEOUT_S, stop: threading.Event | None = None
    ) -> list[str]:
        """Wait until the mailbox of every executor still running has a consumer.

        An executor that exits meanwhile is not waited for (:meth:`exited` lists it, and
        :meth:`supervise` starts it again).

        Args:
            timeout_s: give up after this long.
            stop: give up as soon as it is set.

        Returns:
            The mailboxes of running executors still without a consumer, sorted: empty when
            all are consumed; else the wait timed out or was stopped.

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
        """
        from executor.core.amqp import connect

        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout_s
        connection = connect(self.settings.queue_url)
        try:
            while True:
                running = {
                    p.mailbox for p, process in self._executors.processes if process.poll() is None
                }
                waiting = set()
                for mailbox in running - self._served:
                    if mailbox_consumers(connection, mailbox):
                        self._served.add(mailbox)
                    else:
                        waiting.add(mailbox)
                if not waiting or stop.is_set() or time.monotonic() > deadline:
                    break
                stop.wait(READY_POLL_S)
        finally:
            with contextlib.suppress(Exception):
                connection.close()
        return sorted(waiting)

    def start_scheduler(self, *, tracing: Tracing | None = None) -> Scheduler:
        """Start the scheduler service in this process and return it.

        Args:
            tracing: where its submit spans go; by default as the ``OTEL_*`` variables say.

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
            DagyoError: when the state file cannot be opened or the address is taken.
        """
        # Kept even when start() fails, so that stop() releases what it got to.
        self.scheduler = Scheduler(self.settings, tracing=tracing)
        self.scheduler.start()
        self.scheduler_processes.start(self.scheduler.address)
        return self.scheduler

    def stop_scheduler(self) -> None:
        """Stop the scheduler service and processes, leaving the executors running
        (idempotent)."""
        self.scheduler_processes.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None

    # --- watch and stop ----------------------------------------------------------------------

    def exited(self) -> list[tuple[Progdef, subprocess.Popen[bytes]]]:
        """The executors that have exited, with their progdefs, in the order started."""
        return self._executors.exited()

    def terminate(self) -> None:
        """SIGTERM every live executor: the first drains it, a second stops its jobs."""
        self._executors.terminate()

    def stop(
        self,
        *,
        on_kill: Callable[[Progdef, subprocess.Popen[bytes]], None] | None = None,
        clean: bool = False,
    ) -> bool:
        """Drain and wait for every executor, then stop the scheduler (idempotent).

        An executor still running after the longest drain grace plus
        :data:`~scheduler.local_processes.STOP_MARGIN_S` is killed. The mailbox of a progdef
        whose executors never consumed it (they failed at start-up) is deleted: nothing of
        this cluster could serve it.

        Args:
            on_kill: called with an executor about to be killed; by default a warning is
                logged.
            clean: when every executor exited with status 0, also delete what the cluster
                declared in the broker: every mailbox of its progdefs, the scheduler's
                queues and the exchanges (``dagyo up --clean``).

        Returns:
            True when every executor exited with status 0.
        """
        never = self._never_served()
        clean_exit = self._executors.stop(on_kill=on_kill)
        self.stop_scheduler()
        if clean and clean_exit:
            self._delete(self._declared(), topology=True)
        else:
            self._delete(never)
        return clean_exit

    def _never_served(self) -> list[str]:
        """The mailboxes of this cluster's executors that no executor consumed so far."""
        mailboxes = {progdef.mailbox for progdef, _ in self._executors.processes}
        if not mailboxes - self._served:
            return []
        try:
            self.wait_ready(timeout_s=0)  # those consumed now count as served
        except Exception as e:  # noqa: BLE001 - a stop goes on without the broker
            log.warning("cannot ask the broker which mailboxes were served: %s", e)
            return []
        return sorted(mailboxes - self._served)

    def _declared(self) -> list[str]:
        """Every mailbox of this cluster's executors (each version started) and catalogue."""
        mailboxes = {progdef.mailbox for progdef, _ in self._executors.processes}
        return sorted(mailboxes | {progdef.mailbox for progdef in self.catalogue.values()})

    def _delete(self, mailboxes: list[str], *, topology: bool = False) -> None:
        if not mailboxes and not topology:
            return
        from executor.core.amqp import connect

        try:
            connection = connect(self.settings.queue_url)
        except DagyoError as e:
            log.warning("cannot delete %s: %s", ", ".join(mailboxes) or "the topology", e)
            return
        try:
            channel = connection.channel()
            for mailbox in mailboxes:
                channel.queue_delete(mailbox)
            if topology:
                delete_topology(channel)
        except Exception as e:  # noqa: BLE001 - the broker went away meanwhile
            log.warning("cannot delete %s: %s", ", ".join(mailboxes) or "the topology", e)
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
