/**
 * A node progdef as the executor loads it: its progdef.json, and the ES module export its
 * `run` names (`FILE:EXPORT`, e.g. `main.js:handler`), imported once per executor.
 */

import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { DEFAULT_MAX_JOBS, DRAIN_GRACE_S, MAX_CONCURRENCY } from "./constants.js";
import { ProgdefInvalid } from "./errors.js";

/** What the executor reads of progdef.json. */
export interface Progdef {
  name: string;
  directory: string;
  inputs: Record<string, string>;
  outputs: Record<string, string>;
  run: string;
  init: string;
  style: "function" | "stream";
  errors: string;
  secrets: string[];
  retries: { attempts: number; backoff_s: number };
  /** Function style: how many items of one job may be in flight at once (1 to 1000). */
  concurrency: number;
  maxJobs: number;
  drainGraceS: number;
}

/** Read a progdef folder's progdef.json (the catalogue checked it in full). */
export function loadProgdef(directory: string): Progdef {
  const file = path.join(directory, "progdef.json");
  if (!existsSync(file)) throw new ProgdefInvalid(`${directory}: no progdef.json in this folder`);
  let raw: Record<string, any>;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ProgdefInvalid(`${file}: not JSON: ${String(error)}`);
  }
  if (raw.runtime !== "node") {
    throw new ProgdefInvalid(
      `${file}: progdef ${raw.name} has runtime ${raw.runtime ?? "python"}: this executor runs ` +
        'progdefs of "runtime": "node" (start python -m executor for the others)',
    );
  }
  const concurrency = raw.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new ProgdefInvalid(
      `${file}: progdef '${raw.name}': concurrency ${JSON.stringify(concurrency)} must be a whole number from 1 ` +
        `to ${MAX_CONCURRENCY} (how many items of one job are in flight at once)`,
    );
  }
  return {
    name: String(raw.name),
    directory: path.resolve(directory),
    inputs: raw.inputs ?? {},
    outputs: raw.outputs ?? {},
    run: String(raw.run ?? ""),
    init: String(raw.init ?? ""),
    style: raw.style === "function" ? "function" : "stream",
    errors: String(raw.errors ?? ""),
    secrets: Array.isArray(raw.secrets) ? raw.secrets.map(String) : [],
    retries: { attempts: raw.retries?.attempts ?? 1, backoff_s: (raw.retries?.backoff_ms ?? 100) / 1000 },
    concurrency,
    maxJobs: raw.scaling?.max_jobs ?? DEFAULT_MAX_JOBS,
    drainGraceS: raw.drain_grace_s ?? DRAIN_GRACE_S,
  };
}

/** Import the function a `FILE:EXPORT` target names, relative to the progdef's folder. */
export async function resolveTarget(progdef: Progdef, target: string): Promise<(...args: any[]) => any> {
  const colon = target.lastIndexOf(":");
  if (colon <= 0) {
    throw new ProgdefInvalid(`progdef ${progdef.name}: run ${JSON.stringify(target)} must be FILE:EXPORT, e.g. main.js:handler`);
  }
  const file = path.resolve(progdef.directory, target.slice(0, colon));
  const name = target.slice(colon + 1);
  if (!existsSync(file)) {
    throw new ProgdefInvalid(`progdef ${progdef.name}: ${target}: no file ${target.slice(0, colon)} in ${progdef.directory}`);
  }
  const module = await import(pathToFileURL(file).href);
  const value = module[name];
  if (typeof value !== "function") {
    throw new ProgdefInvalid(
      `progdef ${progdef.name}: ${target}: the module exports no function ${name} ` +
        `(it exports: ${Object.keys(module).join(", ") || "nothing"})`,
    );
  }
  return value;
}

/** The progdef's declared secrets, from the environment. */
export function readSecrets(progdef: Progdef): Record<string, string> {
  const missing = progdef.secrets.filter((name) => process.env[name] === undefined);
  if (missing.length > 0) {
    throw new ProgdefInvalid(
      `progdef ${progdef.name}: secret ${missing.join(", ")} is not set: export it in the ` +
        "executor's environment (in Kubernetes, the progdef's Secret)",
    );
  }
  return Object.fromEntries(progdef.secrets.map((name) => [name, process.env[name] as string]));
}
