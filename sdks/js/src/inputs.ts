/**
 * Input streams: frames consumed with manual acks and a prefetch of 4, each checked (its
 * bounds, producer token, typename and seq: framecheck.ts) and acked when the job takes it;
 * or a port's const items. `for await (const item of job.inputs.NAME)` reads one;
 * `job.merge()` reads several as items arrive.
 */

import type { ConfirmChannel, ConsumeMessage } from "amqplib";
import type protobuf from "protobufjs";

import { FAILURE_KIND_BROKER } from "./constants.js";
import type { JobControl } from "./control.js";
import { StreamCorrupt } from "./errors.js";
import { admit, checkCount, checkSize, StreamPosition } from "./framecheck.js";
import { fetchOffloaded, type ObjectRef, type Offload } from "./objects.js";
import { toItem, wireType, type Item } from "./types.js";

/** Frames arriving for any input of one job, and the waits on them. */
export class Inbox {
  private wakes: Array<() => void> = [];
  /** Called when a read finds nothing waiting: the job flushes its outputs. */
  onIdle: () => void = () => {};

  constructor(readonly control: JobControl) {
    control.listen(() => this.notify());
  }

  notify(): void {
    const wakes = this.wakes;
    this.wakes = [];
    for (const wake of wakes) wake();
  }

  /** Wait for the next frame of any input (or a stop). */
  async wait(): Promise<void> {
    this.control.check();
    this.onIdle();
    await new Promise<void>((resolve) => {
      this.wakes.push(resolve);
    });
    this.control.check();
  }
}

/** One input port of a job. */
export class InputStream implements AsyncIterable<Item> {
  itemsReceived = 0;
  ended = false;
  /** The bytes of the items of the last batch, for the error port. */
  lastRaw: Uint8Array[] = [];
  private pending: ConsumeMessage[] = [];
  private position: StreamPosition;

  constructor(
    readonly port: string,
    readonly typename: string,
    readonly edge: string,
    private readonly type: protobuf.Type,
    private readonly inbox: Inbox,
    private readonly channel: ConfirmChannel | null,
    private consts: Uint8Array[] | null,
    token: string,
    private readonly offload: Offload,
    private readonly flowId: string,
  ) {
    this.position = new StreamPosition(typename, token);
  }

  /** Start consuming the stream queue (manual acks; the channel's prefetch of 4 per input). */
  async consume(queue: string): Promise<void> {
    if (this.channel === null) return;
    await this.channel.consume(queue, (message) => {
      if (message === null) {
        // The broker cancelled the consumer: the stream queue was deleted.
        this.inbox.control.requestStop(`stream ${this.edge} is gone (its queue was deleted)`, FAILURE_KIND_BROKER);
        return;
      }
      this.pending.push(message);
      this.inbox.notify();
    });
  }

  /** Whether its items are the port's consts (all there from the start). */
  get fromConsts(): boolean {
    return this.consts !== null;
  }

  /** Whether a frame waits to be taken. */
  get ready(): boolean {
    return this.consts !== null || this.pending.length > 0;
  }

  /** The items of the next frame taken (maybe none), or null at end-of-stream. */
  async nextBatch(): Promise<Item[] | null> {
    for (;;) {
      if (this.ended) return null;
      const batch = this.take();
      if (batch !== null) return batch;
      await this.inbox.wait();
    }
  }

  /** The items of a frame waiting, without waiting; null when none waits (or at the end). */
  take(): Item[] | null {
    this.inbox.control.check();
    if (this.consts !== null) {
      const raw = this.consts;
      this.consts = null;
      this.ended = true;
      return this.items(raw);
    }
    for (;;) {
      const message = this.pending.shift();
      if (message === undefined) return null;
      const data = new Uint8Array(message.content.buffer, message.content.byteOffset, message.content.byteLength);
      checkSize(data, this.edge);
      let frame: {
        items: Uint8Array[];
        end_of_stream: boolean;
        seq: unknown;
        typename: string;
        token: string;
        offloaded: ObjectRef[];
      };
      try {
        frame = wireType("dagyo.v1.Frame").decode(data) as unknown as typeof frame;
      } catch (error) {
        throw new StreamCorrupt(`${this.edge}: received a frame that does not parse (${String(error)})`);
      }
      checkCount(frame.items.length, this.edge);
      const head = { ...frame, seq: Number(frame.seq ?? 0) };
      const taken = admit(this.position, head, data, this.edge);
      this.channel?.ack(message);
      if (!taken) continue;
      this.ended = this.position.ended;
      const items = [...frame.items];
      if (frame.offloaded.length > 0) fetchOffloaded(this.offload, items, frame.offloaded, this.flowId, `stream ${this.edge}`);
      return this.items(items);
    }
  }

  private items(raw: Uint8Array[]): Item[] {
    this.lastRaw = raw;
    const items = raw.map((data) => {
      try {
        return toItem(this.type, data);
      } catch (error) {
        throw new StreamCorrupt(
          `${this.edge}: received an item that does not parse as ${this.typename} (${String(error)})`,
        );
      }
    });
    this.itemsReceived += items.length;
    return items;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Item> {
    for (;;) {
      const batch = await this.nextBatch();
      if (batch === null) return;
      yield* batch;
    }
  }

  /** Read and discard the rest of the stream (its producer never waits on us), then check
   * what came after its end. */
  async drain(): Promise<void> {
    while ((await this.nextBatch()) !== null);
    while (this.take() !== null);
  }
}

/** Yield [port, item] from several inputs of one job as items arrive (consts first). */
export async function* merge(inbox: Inbox, streams: InputStream[]): AsyncGenerator<[string, Item]> {
  for (const stream of streams.filter((s) => s.fromConsts)) {
    for (const item of stream.take() ?? []) yield [stream.port, item];
  }
  const open = new Set(streams.filter((s) => !s.ended));
  while (open.size > 0) {
    let took = false;
    for (const stream of [...open]) {
      if (stream.ended) {
        open.delete(stream);
        continue;
      }
      const batch = stream.take();
      if (batch === null) continue;
      took = true;
      for (const item of batch) yield [stream.port, item];
      if (stream.ended) open.delete(stream);
    }
    if (!took && open.size > 0) await inbox.wait();
  }
}
