/**
 * What a progdef's code touches: the context of function style (`handler(ctx, item)`),
 * the job of stream style (`run(job)`), and the logger.
 */

import type { JobControl } from "./control.js";
import { ProgdefInvalid, Stopped } from "./errors.js";
import { merge, type Inbox, type InputStream } from "./inputs.js";
import type { OutputStream } from "./outputs.js";
import type { Item } from "./types.js";

/** A logger writing one line per call to stderr, named for the progdef (and node). */
export interface Logger {
  debug(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
}

/** A logger for `name`: lines on stderr as `LEVEL name: message`. */
export function makeLogger(name: string): Logger {
  const line = (level: string) => (message: string, ...rest: unknown[]) =>
    console.error(`${level} ${name}: ${message}`, ...rest);
  return { debug: () => {}, info: line("INFO"), warn: line("WARNING"), error: line("ERROR") };
}

/** Per-executor state of a function-style progdef: `init(ctx)` may set anything on it. */
export interface Context {
  /** The progdef's name. */
  readonly progdef: string;
  /** A logger named for the progdef. */
  readonly logger: Logger;
  /** The progdef's declared secrets, read from the environment. */
  readonly secrets: Readonly<Record<string, string>>;
  [state: string]: unknown;
}

/** One job of a stream-style progdef: `export async function run(job)`. */
export class Job {
  constructor(
    readonly flowId: string,
    readonly node: string,
    readonly progdef: string,
    /** Input ports: `for await (const item of job.inputs.name)`. */
    readonly inputs: Readonly<Record<string, InputStream>>,
    /** Output ports: `await job.outputs.greeting.send(item)`. */
    readonly outputs: Readonly<Record<string, OutputStream>>,
    readonly logger: Logger,
    readonly secrets: Readonly<Record<string, string>>,
    private readonly inbox: Inbox,
    private readonly control: JobControl,
    private readonly errors: string,
    private readonly makeError: (port: InputStream | null, item: Item, error: unknown) => Item,
  ) {}

  /**
   * Read several inputs as their items arrive: `for await (const [port, item] of job.merge())`
   * (every input when no port is named).
   */
  merge(...ports: string[]): AsyncGenerator<[string, Item]> {
    const names = ports.length > 0 ? ports : Object.keys(this.inputs);
    const streams = names.map((name) => {
      const stream = this.inputs[name];
      if (stream === undefined) {
        throw new ProgdefInvalid(`progdef ${this.progdef}: job.merge: no input port ${name}`);
      }
      return stream;
    });
    return merge(this.inbox, streams);
  }

  /** True once the job was told to stop. */
  get stopped(): boolean {
    return this.control.stopped;
  }

  /** Throw Stopped when the job was told to stop: call it in long computations. */
  checkStop(): void {
    if (this.control.stopped) throw new Stopped("the flow was stopped");
  }

  /** Wait `seconds`, but throw Stopped as soon as the job is stopped. */
  sleep(seconds: number): Promise<void> {
    return this.control.sleep(seconds * 1000);
  }

  /** Send the Error for one failed item of input `port` to the error port, and go on. */
  async fail(port: string, item: Item, error: unknown): Promise<void> {
    if (!this.errors) {
      throw new ProgdefInvalid(
        `progdef ${this.progdef}: job.fail needs an error port: declare an output of type ` +
          'dagyo.types.Error and name it in progdef.json ("errors": "<port>")',
      );
    }
    await this.outputs[this.errors].send(this.makeError(this.inputs[port] ?? null, item, error));
  }
}
