"""``python -m executor PROGDEF_DIR [--one-job]``: one executor for one progdef (the
container command).

Exits 0 after a drain (SIGTERM or Ctrl-C), 2 for a bad progdef or setting (a busy
DAGYO_METRICS_PORT too), 3 when the broker cannot be reached.

--one-job: take exactly one job, run it, and exit 0 once it ended (the pods of a progdef
of scaling.mode job); exit 0 as well when no job came within DAGYO_ONE_JOB_IDLE_S.

Reads:
  DAGYO_QUEUE                  the broker's amqp:// URL [amqp://guest:guest@localhost:5672/%2F],
                               or its nodes' URLs separated by ; (tried in order)
  DAGYO_QUEUE_TYPE             its mailbox's type: classic or quorum [quorum when
                               DAGYO_QUEUE lists several URLs, else classic]
  DAGYO_JOBS                   its mailbox [derived from the progdef, and printed]
  DAGYO_METRICS_PORT           /healthz, /readyz and /metrics; 0 any free port, -1 none
                               [9100, or a free port when 9100 is busy]
  DAGYO_METRICS_ADDR           the interface they listen on [0.0.0.0: every one]
  DAGYO_MAX_JOBS               jobs at once [the progdef's scaling.max_jobs]
  DAGYO_DRAIN_GRACE_S          how long a drain waits for jobs [the progdef's drain_grace_s]
  DAGYO_ONE_JOB_IDLE_S         --one-job: exit when no job came this long [60]
  DAGYO_HEARTBEAT_INTERVAL_S   seconds between heartbeats
  DAGYO_RECONNECT_MAX_DELAY_S  longest wait between two reconnection attempts
  DAGYO_IMPORT_TIMEOUT_S       longest wait for the progdef's code to import
  DAGYO_FRAME_MAX_BYTES, DAGYO_FRAME_MAX_ITEMS, DAGYO_FRAME_LINGER_S  stream framing
  DAGYO_LOG_FORMAT             human or json
  OTEL_EXPORTER_OTLP_ENDPOINT  a span per job over OTLP (needs pip install 'dagyo[otel]')
  and the progdef's declared secrets.
"""

from __future__ import annotations

import logging
import sys

from executor._runtime.service import Executor
from executor._runtime.stream import StreamSettings, tune_gc
from executor.core.drain import ShutdownSignals
from executor.core.errors import BrokerUnavailable, DagyoError, ProgdefInvalid
from executor.core.logs import configure_logging
from executor.core.progdef import load_progdef
from executor.core.settings import ExecutorSettings

USAGE = "usage: python -m executor PROGDEF_DIR [--one-job]"
ONE_JOB = "--one-job"


def main(argv: list[str]) -> int:
    """Run one executor until it has drained; return the exit status."""
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.strip().replace("``", ""), file=sys.stderr)
        return 0
    one_job = ONE_JOB in argv
    argv = [arg for arg in argv if arg != ONE_JOB]
    if len(argv) != 1 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        configure_logging()
    except DagyoError as e:
        print(f"executor: {e}", file=sys.stderr)
        return 2
    # pika logs every failed connection attempt as an error; the executor says what failed
    # and what to do in one line of its own (and logs its reconnections).
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        progdef = load_progdef(argv[0])
        settings = ExecutorSettings.from_env(progdef, one_job=one_job)
        executor = Executor(progdef, settings, stream_settings=StreamSettings.from_env())
    except (ProgdefInvalid, DagyoError) as e:
        print(f"executor: {e}", file=sys.stderr)
        return 2
    if settings.mailbox_derived:
        print(
            f"executor {progdef.name}: pulling {settings.mailbox} (derived from "
            f"{argv[0]}; set DAGYO_JOBS to override)",
            file=sys.stderr,
            flush=True,
        )
    tune_gc()
    signals = ShutdownSignals()
    signals.install()
    try:
        executor.start()
    except BrokerUnavailable as e:
        print(f"executor: {e}", file=sys.stderr)
        return 3
    except DagyoError as e:  # the health port is taken
        print(f"executor: {e}", file=sys.stderr)
        return 2
    health = f", health on port {executor.health_port}" if executor.health_port else ""
    print(
        f"executor {progdef.name}: {settings.executor_id} ready, up to {settings.max_jobs} "
        f"jobs{health}",
        file=sys.stderr,
        flush=True,
    )
    return executor.run(signals)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
