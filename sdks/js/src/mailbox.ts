/**
 * The mailbox consumer: jobs pulled with a prefetch equal to the free job slots. A job is
 * acked when it starts (at most once); jobs delivered but not started go back to the
 * mailbox on drain, on a crash (the broker requeues unacked messages) or when the
 * connection is lost. The JavaScript twin of executor/_runtime/mailbox.py.
 */

import type { Channel, ConsumeMessage } from "amqplib";

import type { JobDescriptor } from "./job.js";
import { makeLogger } from "./sdk.js";
import { wireType } from "./types.js";

const log = makeLogger("dagyo.mailbox");

/** A job's descriptor as the executor reads it (field names as in the .proto). */
export function decodeJob(body: Uint8Array): JobDescriptor {
  const type = wireType("dagyo.v1.Job");
  const message = type.decode(body);
  const descriptor = type.toObject(message, {
    longs: Number,
    defaults: true,
    arrays: true,
    objects: true,
  }) as unknown as JobDescriptor;
  // The descriptor set stays a message: it is encoded again for the job's own types.
  descriptor.types = (message as unknown as { types?: JobDescriptor["types"] }).types;
  return descriptor;
}

export class Mailbox {
  running = 0;
  draining = false;
  private channel: Channel | null = null;
  private consumerTag: string | null = null;
  private consuming = false;

  constructor(
    readonly name: string,
    readonly maxJobs: number,
    private readonly onJob: (job: JobDescriptor) => void,
    private readonly queueType: "classic" | "quorum" = "classic",
  ) {}

  /** Job slots not in use. */
  get free(): number {
    return this.maxJobs - this.running;
  }

  /** Declare the mailbox on a new channel and start pulling. */
  async open(channel: Channel): Promise<void> {
    // Durable: jobs wait in the mailbox across broker restarts and executor upgrades.
    // Its type said, classic too, so one declared with the other type is refused, not used.
    await channel.assertQueue(this.name, { durable: true, arguments: { "x-queue-type": this.queueType } });
    this.channel = channel;
    this.consumerTag = null;
    this.consuming = false;
    await this.consume();
  }

  /** Forget the channel: the connection is gone, and unstarted jobs went back. */
  lost(): void {
    this.channel = null;
    this.consumerTag = null;
    this.consuming = false;
  }

  /** A slot freed: pull again. */
  jobDone(): void {
    this.running -= 1;
    this.consume().catch((error) => log.warn(`could not pull the next job: ${String(error)}`));
  }

  /** Take no more jobs (one delivered meanwhile goes back to the mailbox). */
  drain(): void {
    this.draining = true;
    this.cancel();
  }

  private async consume(): Promise<void> {
    const channel = this.channel;
    if (this.consuming || this.draining || this.free <= 0 || channel === null) return;
    this.consuming = true;
    // Prefetch = free slots: the broker hands this executor no more jobs than it can start
    // now; the rest stay in the mailbox for other executors.
    await channel.prefetch(this.free, false);
    const reply = await channel.consume(this.name, (message) => message && this.deliver(channel, message));
    this.consumerTag = reply.consumerTag;
  }

  private cancel(): void {
    const tag = this.consumerTag;
    if (tag !== null && this.channel !== null) this.channel.cancel(tag).catch(() => {});
    this.consumerTag = null;
    this.consuming = false;
  }

  private deliver(channel: Channel, message: ConsumeMessage): void {
    if (channel !== this.channel) return;
    let job: JobDescriptor;
    try {
      job = decodeJob(message.content);
    } catch (error) {
      log.error(
        `dropped a message of ${this.name} that is not a dagyo.v1.Job (${message.content.length} bytes): ${String(error)}`,
      );
      channel.nack(message, false, false);
      return;
    }
    // Acks at start free the prefetch window early, so a job may come while every slot is
    // busy, before the consumer's cancel reached the broker: it goes back at once, to wait
    // in the mailbox (ready, for any executor) rather than held here.
    if (this.draining || this.free <= 0) channel.nack(message, false, true);
    else this.start(channel, message, job);
  }

  private start(channel: Channel, message: ConsumeMessage, job: JobDescriptor): void {
    channel.ack(message); // at most once: a started job is never redelivered
    this.running += 1;
    if (this.free <= 0) this.cancel();
    this.onJob(job);
  }
}
