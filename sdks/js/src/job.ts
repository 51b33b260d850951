/** Running one job: its inputs and outputs on a channel of its own, the author's code, its end. */

import path from "node:path";
import { fileURLToPath } from "node:url";

import type { ChannelModel } from "amqplib";
import type protobuf from "protobufjs";

import { FAILURE_KIND_BROKER, FAILURE_KIND_PANIC, STREAM_PREFETCH_FRAMES } from "./constants.js";
import { JobControl } from "./control.js";
import { runInFlight } from "./inflight.js";
import { Stopped, TypeMismatch } from "./errors.js";
import { Inbox, InputStream } from "./inputs.js";
import { OutputStream, Publisher } from "./outputs.js";
import type { Offload } from "./objects.js";
import type { Progdef } from "./program.js";
import { Job, makeLogger, type Context } from "./sdk.js";
import { fromItem, jobTypes, messageType, wireType, type Item } from "./types.js";

const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** A job as its descriptor (`dagyo.v1.Job`) says, decoded with field names as in the .proto. */
export interface JobDescriptor {
  flow_id: string;
  node: string;
  progdef: string;
  version: string;
  inputs: Record<string, { typename: string; queue?: string; consts?: { items: Uint8Array[] }; edge: string; token: string }>;
  outputs: Record<string, { typename: string; queues: string[]; token: string }>;
  types?: { file?: unknown[] };
  published?: number;
}

/** A failure report (`dagyo.v1.FailureReport`). */
export interface FailureReport {
  flow_id: string;
  node: string;
  progdef: string;
  executor: string;
  error: string;
  traceback: string;
  kind: number;
  time: number;
}

/** The loaded code of a progdef: its style, its function, the executor's context. */
export interface Program {
  progdef: Progdef;
  run: (...args: any[]) => any;
  context: Context;
  secrets: Record<string, string>;
  offload: Offload;
}

/** One job being run: its descriptor, its stop signal, and what it has done so far. */
export class JobRun {
  readonly control = new JobControl();
  inputs: Record<string, InputStream> = {};
  outputs: Record<string, OutputStream> = {};
  readonly taken = Date.now();

  constructor(readonly descriptor: JobDescriptor) {}

  get key(): string {
    return `${this.descriptor.flow_id}/${this.descriptor.node}`;
  }

  itemsSent(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.outputs).map(([port, out]) => [port, out.itemsSent]));
  }

  itemsReceived(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.inputs).map(([port, input]) => [port, input.itemsReceived]));
  }

  blockedS(): number {
    const now = Date.now();
    return Math.max(0, ...Object.values(this.outputs).map((out) => out.blockedS(now)));
  }
}

/** The author's part of a stack: the runtime's and Node's own frames left out. */
export function authorStack(error: unknown): string {
  if (!(error instanceof Error) || !error.stack) return "";
  const lines = error.stack.split("\n");
  const frames = lines.filter((line) => /^\s+at /.test(line));
  const author = frames.filter((line) => !line.includes(SDK_DIR + path.sep + "dist") && !line.includes("node:internal"));
  const head = lines.filter((line) => !/^\s+at /.test(line));
  return [...head, ...(author.length > 0 ? author : frames)].join("\n");
}

/** `Name: message`, as a failure report's error says it. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return `thrown value: ${String(error)}`;
}

/** Run a job and turn its panic into a failure report (null when it ended or was stopped). */
export async function execute(
  run: JobRun,
  program: Program,
  connection: ChannelModel,
  executorId: string,
): Promise<FailureReport | null> {
  const descriptor = run.descriptor;
  try {
    await runJob(run, program, connection);
    return null;
  } catch (error) {
    if (run.control.stopped) {
      if (!run.control.flowStopped && !run.control.stopReason) {
        run.control.stopReason = describeError(error);
        run.control.stopKind = FAILURE_KIND_BROKER;
      }
      return null;
    }
    const runtime = error instanceof TypeMismatch && !authorStack(error).includes(program.progdef.directory);
    const stopped = error instanceof Stopped;
    return {
      flow_id: descriptor.flow_id,
      node: descriptor.node,
      progdef: descriptor.progdef,
      executor: executorId,
      error: stopped ? "Stopped thrown without a stop: do not throw Stopped yourself" : describeError(error),
      traceback: runtime || stopped ? "" : authorStack(error),
      kind: FAILURE_KIND_PANIC,
      time: Date.now() / 1000,
    };
  }
}

async function runJob(run: JobRun, program: Program, connection: ChannelModel): Promise<void> {
  const descriptor = run.descriptor;
  const where = `job ${descriptor.flow_id}/${descriptor.node}`;
  const files = descriptor.types?.file ?? [];
  const types =
    files.length > 0
      ? wireType("google.protobuf.FileDescriptorSet").encode(descriptor.types as protobuf.Message).finish()
      : undefined;
  const root = jobTypes(types, where);
  const channel = await connection.createConfirmChannel();
  channel.on("error", () => {});
  const forget = run.control.listen(() => channel.close().catch(() => {}));
  const publisher = new Publisher(channel, run.control);
  try {
    // Prefetch per consumer (one per input): 4 frames of each stream, acked when taken.
    await channel.prefetch(STREAM_PREFETCH_FRAMES, false);
    const inbox = new Inbox(run.control);
    for (const [port, spec] of Object.entries(descriptor.outputs)) {
      const edge = `${descriptor.node}.${port}`;
      run.outputs[port] = new OutputStream(
        port,
        spec.typename,
        messageType(root, spec.typename, edge),
        spec.queues,
        spec.token,
        publisher,
        `progdef ${descriptor.progdef}, node ${descriptor.node}, output ${port}`,
        program.offload,
        `flows/${descriptor.flow_id}/${descriptor.node}.${port}/`,
      );
    }
    for (const [port, spec] of Object.entries(descriptor.inputs)) {
      const consts = spec.queue ? null : (spec.consts?.items ?? []);
      const edge = consts !== null ? `const -> ${descriptor.node}.${port}` : `${spec.edge} -> ${descriptor.node}.${port}`;
      const type = messageType(root, spec.typename, edge);
      const input = new InputStream(port, spec.typename, edge, type, inbox, channel, consts, spec.token, program.offload, descriptor.flow_id);
      run.inputs[port] = input;
      if (spec.queue) await input.consume(spec.queue);
    }
    const outputs = Object.values(run.outputs);
    inbox.onIdle = () => outputs.forEach((out) => out.flushNowait());
    const logger = makeLogger(`dagyo.job.${descriptor.progdef} ${descriptor.flow_id}/${descriptor.node}`);
    const makeError = errorMaker(descriptor, root);
    if (program.progdef.style === "function") {
      await runFunction(run, program, makeError);
    } else {
      const job = new Job(descriptor.flow_id, descriptor.node, descriptor.progdef, run.inputs, run.outputs, logger,
        program.secrets, inbox, run.control, program.progdef.errors, (input, item, error) => makeError(input, item, error, 1));
      await program.run(job);
    }
    for (const out of outputs) await out.close();
    for (const input of Object.values(run.inputs)) await input.drain();
  } finally {
    forget();
    publisher.retire();
    await channel.close().catch(() => {});
  }
}

type MakeError = (input: InputStream | null, item: Item, error: unknown, attempts: number, raw?: Uint8Array) => Item;

function errorMaker(descriptor: JobDescriptor, root: protobuf.Root): MakeError {
  return (input, item, error, attempts, raw) => {
    if (error instanceof Stopped) throw error;
    let bytes = raw;
    if (bytes === undefined && input !== null) {
      bytes = fromItem(messageType(root, input.typename, input.edge), item, input.edge);
    }
    return {
      node: descriptor.node,
      progdef: descriptor.progdef,
      typename: input?.typename ?? "",
      item: bytes ?? new Uint8Array(),
      error: error instanceof Error ? describeError(error) : String(error),
      traceback: error instanceof Error ? authorStack(error) : "",
      attempts,
      time: Date.now() / 1000,
    };
  };
}

async function runFunction(run: JobRun, program: Program, makeError: MakeError): Promise<void> {
  const { progdef, context } = program;
  const [input] = Object.values(run.inputs);
  const errors = progdef.errors ? run.outputs[progdef.errors] : undefined;
  const output = Object.entries(run.outputs).find(([port]) => port !== progdef.errors)?.[1];
  const { attempts, backoff_s: backoffS } = progdef.retries;
  if (progdef.concurrency > 1 && input !== undefined) {
    return runInFlight({
      concurrency: progdef.concurrency,
      control: run.control,
      next: () => input.nextBatch(),
      raws: () => input.lastRaw,
      start: (item) => call(program.run, context, item, attempts, backoffS, run, progdef.name),
      results: (value) => returned(value, progdef.name, output),
      fail: async (item, raw, error) => {
        if (errors === undefined || error instanceof Stopped) throw error;
        await errors.send(makeError(input, item, error, attempts, raw));
      },
      send: (items) => sendResults(items, progdef.name, output),
    });
  }
  for (;;) {
    const batch = input === undefined ? null : await input.nextBatch();
    if (batch === null) return;
    const raw = input.lastRaw;
    // One batch per input frame: its results go out together.
    const results: Item[] = [];
    for (const [index, item] of batch.entries()) {
      let result: unknown;
      try {
        result = await call(program.run, context, item, attempts, backoffS, run, progdef.name);
      } catch (error) {
        if (errors === undefined || error instanceof Stopped) throw error;
        await errors.send(makeError(input, item, error, attempts, raw[index]));
        continue;
      }
      results.push(...returned(result, progdef.name, output));
    }
    if (results.length > 0) await sendResults(results, progdef.name, output);
  }
}

async function sendResults(results: Item[], progdef: string, output: OutputStream | undefined): Promise<void> {
  if (output === undefined) {
    throw new TypeMismatch(
      `progdef ${progdef}: the handler returned an item but the progdef has no output port: ` +
        "return nothing, or declare an output",
    );
  }
  await output.sendAll(results);
}

async function call(
  handler: (...args: any[]) => any,
  context: Context,
  item: Item,
  attempts: number,
  backoffS: number,
  run: JobRun,
  progdef: string,
): Promise<unknown> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await handler(context, item);
    } catch (error) {
      if (error instanceof Stopped || attempt >= attempts) throw error;
      context.logger.warn(
        `node ${run.descriptor.node} (progdef ${progdef}): retrying item (attempt ${attempt + 1} of ${attempts}) ` +
          `after ${describeError(error)}`,
      );
      await run.control.sleep(backoffS * 1000 * 2 ** (attempt - 1));
    }
  }
}

function returned(result: unknown, progdef: string, output: OutputStream | undefined): Item[] {
  if (result === undefined || result === null) return [];
  const isItem = (value: unknown) => typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
  if (isItem(result)) return [result as Item];
  if (Array.isArray(result) && result.every(isItem)) return result as Item[];
  const wanted = output !== undefined ? ` (a ${output.typename} for port ${output.port})` : "";
  throw new TypeMismatch(
    `progdef ${progdef}: the handler returned ${Array.isArray(result) ? "an array holding a non-object" : typeof result}: ` +
      `return an item${wanted}, an array of them, or nothing`,
  );
}
