/**
 * Wire names, bounds and time defaults of docs/protocol.md, in one place (the JavaScript
 * twin of executor/core/constants.py).
 */

export const ENV_QUEUE = "DAGYO_QUEUE";
export const ENV_JOBS = "DAGYO_JOBS";
export const ENV_PROGDEF_VERSION = "DAGYO_PROGDEF_VERSION";
export const DEFAULT_QUEUE_URL = "amqp://guest:guest@localhost:5672/%2F";

export const MAILBOX_PREFIX = "dagyo.mailbox";
export const EVENTS_EXCHANGE = "dagyo.events";
export const FAILURES_EXCHANGE = "dagyo.failures";
export const STOP_EXCHANGE = "dagyo.stop";

/** A flow's shard: the first hex character of its id (docs/protocol.md, Topology). */
export function shardOf(flowId: string): string {
  return flowId.slice(0, 1) || "0";
}

/** The routing keys of a job's events on EVENTS_EXCHANGE: its flow's shard. */
export function jobStartedKey(flowId: string): string {
  return `job.started.${shardOf(flowId)}`;
}

export function jobEndedKey(flowId: string): string {
  return `job.ended.${shardOf(flowId)}`;
}

/** The routing key of a flow's failure reports on FAILURES_EXCHANGE: "{shard}.{flow}". */
export function failureKey(flowId: string): string {
  return `${shardOf(flowId)}.${flowId}`;
}

export const PROTOBUF_CONTENT_TYPE = "application/x-protobuf";

export const JOB_ENDED = "";
export const JOB_PANICKED = "panicked";
export const JOB_STOPPED = "stopped";
export const JOB_BROKER = "broker";
export const JOB_REFUSED = "refused";
export const JOB_EXECUTOR = "executor";

export const FAILURE_KIND_PANIC = 1;
export const FAILURE_KIND_BROKER = 5;

export const FRAME_MAX_BYTES = 128 * 1024;
export const FRAME_MAX_ITEMS = 8192;
export const FRAME_LINGER_MS = 20;
export const ITEM_MAX_BYTES = 64 * 1024 * 1024;
export const FRAME_RECEIVE_MAX_BYTES = FRAME_MAX_BYTES + ITEM_MAX_BYTES + 4096;
export const REPEAT_WINDOW_FRAMES = 16;
export const STREAM_PREFETCH_FRAMES = 4;

export const HEARTBEAT_INTERVAL_S = 2.0;
export const DRAIN_GRACE_S = 60.0;
export const DEFAULT_MAX_JOBS = 100;
export const MAX_JOBS_LIMIT = 2000;
export const EXECUTOR_METRICS_PORT = 9100;
export const RECONNECT_DELAY_S = 0.5;
export const RECONNECT_MAX_DELAY_S = 30.0;
export const FULL_STREAM_BACKOFF_MS = 1;
export const FULL_STREAM_BACKOFF_MAX_MS = 50;
export const STOPPED_FLOW_MEMORY_S = 600.0;
export const ONE_JOB_IDLE_S = 60.0;

export const ENV_OBJECTS = "DAGYO_OBJECTS";
export const ENV_OFFLOAD_BYTES = "DAGYO_OFFLOAD_BYTES";
export const OFFLOAD_BYTES = 1024 * 1024;
export const OBJECTS_FLOWS_PREFIX = "flows/";

/** The most items of one function-style job in flight at once (progdef.json `concurrency`). */
export const MAX_CONCURRENCY = 1000;
