/**
 * Output streams: items batched into frames and published to every queue of the port
 * (docs/protocol.md, Streams): a frame goes out at 128 KiB or 8192 items, when its first
 * item has waited 20 ms, and at the end; a nacked publish (a full stream) is published
 * again, the same frame, backing off from 1 ms to 50 ms; frame seq+1 of a queue never goes
 * before frame seq was acked there.
 */

import type { ConfirmChannel } from "amqplib";
import type protobuf from "protobufjs";

import {
  FAILURE_KIND_BROKER,
  FRAME_LINGER_MS,
  FRAME_MAX_BYTES,
  FRAME_MAX_ITEMS,
  FULL_STREAM_BACKOFF_MAX_MS,
  FULL_STREAM_BACKOFF_MS,
  ITEM_MAX_BYTES,
  PROTOBUF_CONTENT_TYPE,
} from "./constants.js";
import type { JobControl } from "./control.js";
import type { ObjectRef, Offload } from "./objects.js";
import { Stopped, TypeMismatch } from "./errors.js";
import { fromItem, wireType, type Item } from "./types.js";

/** The publishing side of one job's channel, shared by its outputs. */
export class Publisher {
  private returned = new Set<string>();
  closed = false;
  // Set when the job is over (ended or panicked): a publish cut short is no broker failure.
  private retired = false;

  constructor(
    readonly channel: ConfirmChannel,
    private readonly control: JobControl,
  ) {
    // A basic.return comes before its publish's confirm: the queue is gone.
    channel.on("return", (message) => this.returned.add(message.fields.routingKey));
    channel.on("close", () => {
      this.closed = true;
    });
    channel.on("error", () => {
      this.closed = true;
    });
  }

  /** Publish one frame body to one queue until the broker took it. */
  async publish(queue: string, body: Uint8Array, onBlocked: (since: number | null) => void): Promise<void> {
    let backoff = FULL_STREAM_BACKOFF_MS;
    for (;;) {
      this.control.check();
      if (this.closed) this.gone(`its channel to the broker closed while publishing to ${queue}`);
      const outcome = await new Promise<string>((resolve) => {
        this.returned.delete(queue);
        try {
          this.channel.publish(
            "",
            queue,
            Buffer.from(body.buffer, body.byteOffset, body.byteLength),
            { mandatory: true, contentType: PROTOBUF_CONTENT_TYPE, type: "dagyo.v1.Frame" },
            (error) => resolve(error ? "nacked" : this.returned.has(queue) ? "returned" : "taken"),
          );
        } catch {
          resolve("closed");
        }
      });
      if (outcome === "taken") {
        onBlocked(null);
        return;
      }
      if (outcome === "returned") this.gone(`stream queue ${queue} is gone (its flow ended)`);
      if (outcome === "closed" || this.closed) this.gone(`its channel to the broker closed while publishing to ${queue}`);
      onBlocked(Date.now()); // a full stream: the same frame again, later
      await this.control.sleep(backoff);
      backoff = Math.min(backoff * 2, FULL_STREAM_BACKOFF_MAX_MS);
    }
  }

  /** The job is over: its channel closes, and publishes still waiting fail quietly. */
  retire(): void {
    this.retired = true;
  }

  private gone(reason: string): never {
    if (!this.retired) this.control.requestStop(reason, FAILURE_KIND_BROKER);
    throw new Stopped(reason);
  }
}

/** One output port of a job: `await job.outputs.NAME.send(item)`. */
export class OutputStream {
  itemsSent = 0;
  framesSent = 0;
  private buffered: Uint8Array[] = [];
  private references: ObjectRef[] = [];
  private objects = 0;
  private bufferedBytes = 0;
  private seq = 0;
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown = undefined;
  private timer: NodeJS.Timeout | undefined;
  private blockedSince: number | null = null;
  private closed = false;

  constructor(
    readonly port: string,
    readonly typename: string,
    private readonly type: protobuf.Type,
    private readonly queues: string[],
    private readonly token: string,
    private readonly publisher: Publisher,
    private readonly where: string,
    private readonly offload: Offload,
    /** `flows/{flow}/{node}.{port}/`: where this port's offloaded items go. */
    private readonly objectsPrefix: string,
  ) {}

  /** Send one item (a plain object of the port's message); waits while the stream is full. */
  async send(item: Item): Promise<void> {
    this.add(item);
    if (this.buffered.length >= FRAME_MAX_ITEMS || this.bufferedBytes >= FRAME_MAX_BYTES) {
      await this.flush(false);
    }
  }

  /** Send several items, in order. */
  async sendAll(items: Item[]): Promise<void> {
    for (const item of items) await this.send(item);
  }

  /** Seconds this output has been waiting for a full stream to take a frame (0: it is not). */
  blockedS(now = Date.now()): number {
    return this.blockedSince === null ? 0 : (now - this.blockedSince) / 1000;
  }

  private add(item: Item): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new TypeMismatch(`${this.where}: the port sent end-of-stream already`);
    let data = fromItem(this.type, item, this.where);
    const store = this.offload.store;
    if (store !== null && data.length > this.offload.threshold) {
      // Kept in the object store; the frame carries an empty item and a reference.
      const key = `${this.objectsPrefix}${this.objects++}`;
      const { size, sha256 } = store.put(key, data);
      this.references.push({ index: this.buffered.length, store: store.url, key, size, sha256 });
      this.bufferedBytes += 150;
      data = new Uint8Array();
    } else if (data.length > ITEM_MAX_BYTES) {
      throw new TypeMismatch(
        `${this.where}: an item of ${this.typename} of ${data.length} bytes is larger than the ` +
          `${ITEM_MAX_BYTES} an item may be`,
      );
    }
    this.buffered.push(data);
    this.bufferedBytes += data.length;
    this.itemsSent += 1;
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flushNowait(), FRAME_LINGER_MS);
    }
  }

  /** Send what is buffered now, without waiting for the broker (an idle job, the linger). */
  flushNowait(): void {
    if (this.buffered.length === 0 || this.closed) return;
    this.flush(false).catch((error) => {
      this.failure ??= error;
    });
  }

  /** Send the rest and end-of-stream; waits until every queue took it. */
  async close(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) return;
    await this.flush(true);
    this.closed = true;
    await this.chain;
  }

  private flush(endOfStream: boolean): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const frame = wireType("dagyo.v1.Frame");
    const body = frame
      .encode(
        frame.create({
          items: this.buffered,
          end_of_stream: endOfStream,
          seq: this.seq,
          typename: this.typename,
          token: this.token,
          offloaded: this.references,
        }),
      )
      .finish();
    this.seq += 1;
    this.buffered = [];
    this.references = [];
    this.bufferedBytes = 0;
    const onBlocked = (since: number | null) => {
      this.blockedSince = since === null ? null : (this.blockedSince ?? since);
    };
    this.chain = this.chain.then(async () => {
      for (const queue of this.queues) await this.publisher.publish(queue, body, onBlocked);
      this.framesSent += 1;
    });
    return this.chain;
  }
}
