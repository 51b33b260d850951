"""``python -m executor PROGDEF_DIR``: one executor for one progdef (the container command).

Exits 0 after a drain (SIGTERM or Ctrl-C), 2 for a bad progdef or setting (a busy
DAGYO_METRICS_PORT too), 3 when the broker cannot be reached.

Reads:
  DAGYO_QUEUE                  the broker's amqp:// URL [amqp://guest:guest@localhost:5672/%2F]
  DAGYO_JOBS                   its mailbox [derived from the progdef, and printed]
  DAGYO_METRICS_PORT           /healthz, /readyz and /metrics; 0 any free port, -1 none
                               [9100, or a free port when 9100 is busy]
  DAGYO_MAX_JOBS               jobs at once [the progdef's scaling.max_jobs]
  DAGYO_DRAIN_GRACE_S          how long a drain waits for jobs [the progdef's drain_grace_s]
  DAGYO_HEARTBEAT_INTERVAL_S   seconds between heartbeats
  DAGYO_RECONNECT_MAX_DELAY_S  longest wait between two reconnection attempts
  DAGYO_IMPORT_TIMEOUT_S       longest wait for the progdef's code to import
  DAGYO_FRAME_MAX_BYTES, DAGYO_FRAME_MAX_ITEMS, DAGYO_FRAME_LINGER_S  stream framing
  DAGYO_LOG_FORMAT             human or json
  and the progdef's declared secrets.
"""

from __future__ import annotations

import logging
import sys

from executor.drain import ShutdownSignals
from executor.errors import BrokerUnavailable, DagyoError, ProgdefInvalid
from executor.logs import configure_logging
from executor.progdef import load_progdef
from executor.service import Executor
from executor.settings import ExecutorSettings
from executor.stream import StreamSettings, tune_gc

USAGE = "usage: python -m executor PROGDEF_DIR"


def main(argv: list[str]) -> int:
    """Run one executor until it has drained; return the exit status."""
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().replace("``", "") if argv else USAGE, file=sys.stderr)
        return 0 if argv else 2
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
        settings = ExecutorSettings.from_env(progdef)
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
