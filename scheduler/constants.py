"""The scheduler's own names and defaults: its variables, ports, bounds and ticks.

The wire's names (queues, exchanges, headers) and what both programs share are in
:mod:`executor.core.constants`; these are the scheduler's, the CLI's and the embedded
runner's alone, so a progdef image carries none of them.
"""

from __future__ import annotations

# --- environment --------------------------------------------------------------------------
ENV_SCHEDULER = "DAGYO_SCHEDULER"
ENV_PROGDEFS = "DAGYO_PROGDEFS"
ENV_STATE = "DAGYO_STATE"
ENV_HEARTBEAT_TIMEOUT_S = "DAGYO_HEARTBEAT_TIMEOUT_S"
ENV_EXPORT_CAP_BYTES = "DAGYO_EXPORT_CAP_BYTES"
ENV_REQUIRE_CONSUMERS = "DAGYO_REQUIRE_CONSUMERS"
# 1: the embedded runner serializes every item as a cluster does (see executor/core/frames.py).
ENV_EMBEDDED_SERIALIZE = "DAGYO_EMBEDDED_SERIALIZE"
DEFAULT_SCHEDULER_ADDRESS = "localhost:50051"
# The cache of deterministic results (docs/cache.md): `dagyo run`'s folder, its bound, and
# the most one output may take to be cached.
ENV_CACHE_DIR = "DAGYO_CACHE_DIR"
ENV_CACHE_BYTES = "DAGYO_CACHE_BYTES"
ENV_CACHE_MAX_BYTES = "DAGYO_CACHE_MAX_BYTES"
CACHE_BYTES = 1 << 30
CACHE_MAX_BYTES = 64 << 20

# --- the embedded runner ------------------------------------------------------------------
# A frame of messages holds at most this many items (the embedded runner's default): the
# items a job makes are still in the CPU's cache when the next job reads them, which made
# source -> greet -> count 15-25 % faster than frames of FRAME_MAX_ITEMS (bench/stream.py).
MESSAGE_FRAME_MAX_ITEMS = 128

# --- the scheduler service ----------------------------------------------------------------
# A job whose executor sent no heartbeat this long is lost (DAGYO_HEARTBEAT_TIMEOUT_S).
HEARTBEAT_TIMEOUT_S = 15.0
SCHEDULER_METRICS_PORT = 9101
# `dagyo up` serves health and metrics on loopback only (DAGYO_METRICS_ADDR).
LOOPBACK_METRICS_HOST = "127.0.0.1"
# Exports kept with a flow record, in bytes of JSON. Below gRPC's 4 MiB default message
# size so a record with all its kept exports still fits one Get answer.
EXPORT_CAP_BYTES = 1024 * 1024
# A file with this name next to a progdef.json says an autoscaler (KEDA) starts executors
# for its mailbox, so Submit accepts the progdef even when no executor consumes it yet.
AUTOSCALER_FILE = "AUTOSCALER"
# How often the scheduler looks for lost jobs and passed deadlines (at most).
SCHEDULER_TICK_S = 0.25
