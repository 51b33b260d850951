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
  const queueUrls = splitUrls(queueUrl);
  for (const url of queueUrls) checkUrl(url);
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

/**
 * DAGYO_QUEUE's broker URLs in the order given, each stripped of spaces: a list is split
 * only at a ";" that starts another amqp:// or amqps:// URL (as kombu writes them), so a
 * password holding a ";" never splits it (executor/core/brokerurls.py).
 */
export function splitUrls(queue: string): string[] {
  return queue.split(/;(?=\s*amqps?:\/\/)/i).map((url) => url.trim());
}

/**
 * The broker URL, or each URL of a list, with its password hidden, for messages. Never
 * parses a URL: whatever lies between "://" and the last "@" is the user information, of
 * which only the user name is kept (executor/core/errors.py redact_url).
 */
export function redacted(queue: string): string {
  return splitUrls(queue).map(redactOne).join(";");
}

/** Refuse a broker URL as the Python executor does (executor/core/settings.py check_url). */
function checkUrl(url: string): void {
  const refuse = (reason: string) =>
    new SettingError(
      `${ENV_QUEUE}: not a valid amqp:// URL: ${redactOne(url)} (${reason}); the form is ` +
        "amqp://USER:PASSWORD@HOST:PORT/VHOST, with # / ? @ : % in the user name or " +
        "password percent-encoded (%23 %2F %3F %40 %3A %25)",
    );
  const scheme = url.indexOf("://");
  if (scheme < 0 || !["amqp", "amqps"].includes(url.slice(0, scheme).toLowerCase())) {
    throw refuse("it must start with amqp:// or amqps://");
  }
  const rest = url.slice(scheme + 3);
  const at = rest.lastIndexOf("@");
  const address = rest.slice(at + 1);
  if (/[/?#@]/.test(rest.slice(0, Math.max(at, 0)))) {
    throw refuse("the user name or password holds an unencoded # / ? or @");
  }
  if (address.includes(";")) {
    throw refuse("several broker URLs are separated by ;, each starting with amqp:// or amqps://");
  }
  const host = /^(\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?/.exec(address);
  const port = host?.[2];
  if (port !== undefined && port !== "" && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
    throw refuse("the port must be a number from 1 to 65535");
  }
  if (!host?.[1]) throw refuse("it names no host");
}

function redactOne(url: string): string {
  const scheme = url.lastIndexOf("://");
  const rest = scheme < 0 ? url : url.slice(scheme + 3);
  const at = rest.lastIndexOf("@");
  if (at < 0) return url;
  const userinfo = rest.slice(0, at);
  const colon = userinfo.indexOf(":");
  const hidden = colon < 0 ? userinfo : `${userinfo.slice(0, colon)}:***`;
  return `${url.slice(0, scheme < 0 ? 0 : scheme + 3)}${hidden}${rest.slice(at)}`;
}
