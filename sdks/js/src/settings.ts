/** Executor settings, read once from the environment at start-up (as executor/core/settings.py). */

import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

import {
  DEFAULT_QUEUE_URL,
  ENV_JOBS,
  ENV_PROGDEF_VERSION,
  ENV_QUEUE,
  EXECUTOR_METRICS_PORT,
  HEARTBEAT_INTERVAL_S,
  MAILBOX_PREFIX,
  MAX_JOBS_LIMIT,
  ONE_JOB_IDLE_S,
  RECONNECT_MAX_DELAY_S,
} from "./constants.js";
import { SettingError } from "./errors.js";
import { executorId } from "./executor.js";
import type { Progdef } from "./program.js";

export interface Settings {
  queueUrl: string;
  /** DAGYO_QUEUE's broker URLs, tried in order (a broker of several nodes). */
  queueUrls: string[];
  /** The type of the mailbox queue: DAGYO_QUEUE_TYPE, else quorum for several URLs. */
  queueType: "classic" | "quorum";
  mailbox: string;
  version: string;
  maxJobs: number;
  heartbeatIntervalS: number;
  drainGraceS: number;
  metricsPort: number;
  metricsHost: string;
  executorId: string;
  reconnectMaxDelayS: number;
  oneJob: boolean;
  oneJobIdleS: number;
}


function number(name: string, fallback: number, integer = false): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new SettingError(`${name}=${JSON.stringify(raw)} is not a number: fix or unset it`);
  }
  return value;
}

/**
 * The version this executor serves: its mailbox's (`dagyo.mailbox.{progdef}.{version}`),
 * else the one baked in (DAGYO_PROGDEF_VERSION, a VERSION file next to progdef.json).
 */
export function servedVersion(mailbox: string, progdef: Progdef): string {
  const prefix = `${MAILBOX_PREFIX}.${progdef.name}.`;
  if (mailbox.startsWith(prefix) && !mailbox.slice(prefix.length).includes(".")) return mailbox.slice(prefix.length);
  const baked = process.env[ENV_PROGDEF_VERSION] ?? "";
  if (baked) return baked;
  const file = path.join(progdef.directory, "VERSION");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  throw new SettingError(
    `progdef ${progdef.name}: this executor does not compute versions: set ${ENV_JOBS} to its ` +
      `mailbox (dagyo.mailbox.${progdef.name}.VERSION, as \`dagyo progdefs\` prints it) or ` +
      `${ENV_PROGDEF_VERSION}`,
  );
}

/** Read the settings for `progdef` from the environment. */
export function settingsFromEnv(progdef: Progdef, oneJob = false): Settings {
  const queueUrl = process.env[ENV_QUEUE] || DEFAULT_QUEUE_URL;
  // Several URLs are separated by a ";" that starts another amqp:// URL (as kombu writes them).
  const queueUrls = queueUrl.split(/;(?=\s*amqps?:\/\/)/i).map((url) => url.trim());
  if (!queueUrls.every((url) => /^amqps?:\/\/[^/]/i.test(url))) {
    throw new SettingError(`${ENV_QUEUE}: the broker URL must start with amqp:// or amqps:// and name a host`);
  }
  const rawType = (process.env.DAGYO_QUEUE_TYPE ?? "").trim().toLowerCase();
  if (rawType && rawType !== "classic" && rawType !== "quorum") {
    throw new SettingError(
      `DAGYO_QUEUE_TYPE=${JSON.stringify(rawType)} is not a queue type: classic, or quorum (replicated, ` +
        "for a broker of several nodes); unset, quorum when DAGYO_QUEUE lists several URLs",
    );
  }
  const queueType = (rawType || (queueUrls.length > 1 ? "quorum" : "classic")) as Settings["queueType"];
  const jobs = process.env[ENV_JOBS] ?? "";
  let version = "";
  let mailbox = jobs;
  if (!jobs) {
    version = servedVersion("", progdef);
    mailbox = `${MAILBOX_PREFIX}.${progdef.name}.${version}`;
    console.log(`pulling ${mailbox}`);
  } else {
    version = servedVersion(jobs, progdef);
  }
  let maxJobs = number("DAGYO_MAX_JOBS", progdef.maxJobs, true);
  if (oneJob) maxJobs = 1;
  if (maxJobs < 1 || maxJobs > MAX_JOBS_LIMIT) {
    throw new SettingError(
      `DAGYO_MAX_JOBS=${maxJobs} is out of bounds: from 1 to ${MAX_JOBS_LIMIT} (each running job holds one of ` +
        "the connection's AMQP channels): run more executors",
    );
  }
  const reconnectMaxDelayS = number("DAGYO_RECONNECT_MAX_DELAY_S", RECONNECT_MAX_DELAY_S);
  if (!(reconnectMaxDelayS > 0)) throw new SettingError("DAGYO_RECONNECT_MAX_DELAY_S must be more than 0 seconds");
  const oneJobIdleS = number("DAGYO_ONE_JOB_IDLE_S", ONE_JOB_IDLE_S);
  if (!(oneJobIdleS > 0)) throw new SettingError("DAGYO_ONE_JOB_IDLE_S must be more than 0 seconds");
  return {
    queueUrl,
    queueUrls,
    queueType,
    mailbox,
    version,
    maxJobs,
    heartbeatIntervalS: number("DAGYO_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S),
    drainGraceS: number("DAGYO_DRAIN_GRACE_S", progdef.drainGraceS),
    metricsPort: number("DAGYO_METRICS_PORT", EXECUTOR_METRICS_PORT, true),
    metricsHost: (process.env.DAGYO_METRICS_ADDR ?? "").replace(/^\[|\]$/g, "") || "0.0.0.0",
    executorId: executorId(progdef.name),
    reconnectMaxDelayS,
    oneJob,
    oneJobIdleS,
  };
}

/** The broker URL with its password hidden, for messages. */
export function redacted(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
}
