/**
 * The executor: a long-lived process serving one node progdef, running up to `max_jobs`
 * jobs at once (docs/protocol.md): its mailbox pulled with a prefetch equal to its free job
 * slots, a job acked when it starts, heartbeats, Stop, each job's end reported (failure
 * report first, then `ended`, each confirmed), and a drain on SIGTERM.
 */

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";

import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from "amqplib";

import {
  EVENTS_EXCHANGE,
  FAILURE_KIND_BROKER,
  FAILURES_EXCHANGE,
  JOB_BROKER,
  JOB_EXECUTOR,
  JOB_PANICKED,
  JOB_REFUSED,
  JOB_STOPPED,
  PROTOBUF_CONTENT_TYPE,
  RECONNECT_DELAY_S,
  STOP_EXCHANGE,
  STOPPED_FLOW_MEMORY_S,
  failureKey,
  jobEndedKey,
  jobStartedKey,
} from "./constants.js";
import { Mailbox } from "./mailbox.js";
import { execute, JobRun, type FailureReport, type JobDescriptor, type Program } from "./job.js";
import type { Settings } from "./settings.js";
import { makeLogger } from "./sdk.js";
import { wireType } from "./types.js";

const log = makeLogger("dagyo.executor");

interface JobEnd {
  run: JobRun;
  ended: Record<string, unknown>;
  failure: FailureReport | null;
  failureSent: boolean;
  slotFreed: boolean;
}

/** Why an executor of `progdef` at `version` must not run `job`; empty: it may. */
export function refusal(job: JobDescriptor, progdef: string, version: string, mailbox: string): string {
  if (job.progdef === progdef && job.version === version) return "";
  return (
    `the job is for progdef ${job.progdef || "(none)"} version ${job.version || "(none)"}, ` +
    `but this executor serves progdef ${progdef} version ${version} (mailbox ${mailbox}): ` +
    "refused unrun; it was published to the wrong mailbox (by hand, or by a scheduler " +
    "with another catalogue)"
  );
}

export class Executor {
  readonly runs = new Map<string, JobRun>();
  connected = false;
  private connection: ChannelModel | null = null;
  private control: ConfirmChannel | null = null;
  private news: Channel | null = null;
  private readonly mailbox: Mailbox;
  private reports = new Map<string, JobEnd>();
  private stoppedFlows = new Map<string, number>();
  private timers: NodeJS.Timeout[] = [];
  private closing = false;
  private idle: Array<() => void> = [];
  tookJob = false;

  constructor(
    readonly program: Program,
    readonly settings: Settings,
  ) {
    this.mailbox = new Mailbox(settings.mailbox, settings.maxJobs, (job) => this.onJob(job), settings.queueType);
  }

  /** True once it takes no more jobs (a drain, or its one job taken). */
  get draining(): boolean {
    return this.mailbox.draining;
  }

  private jobDone(): void {
    this.mailbox.jobDone();
    this.wakeIdle();
  }

  /** Connect and start pulling jobs; throws when the broker cannot be reached at all. */
  async start(): Promise<void> {
    await this.connect();
    this.timers.push(setInterval(() => this.heartbeat(), this.settings.heartbeatIntervalS * 1000));
    this.timers.push(setInterval(() => this.housekeep(), this.settings.heartbeatIntervalS * 1000));
  }

  private async connect(): Promise<void> {
    const connection = await this.open();
    connection.on("error", (error) => log.warn(`broker connection: ${String(error)}`));
    connection.on("close", () => this.lost(connection));
    const control = await connection.createConfirmChannel();
    await control.assertExchange(EVENTS_EXCHANGE, "topic", { durable: true });
    await control.assertExchange(FAILURES_EXCHANGE, "topic", { durable: true });
    await control.assertExchange(STOP_EXCHANGE, "fanout", { durable: true });
    // One stop consumer per executor process, whatever the number of jobs.
    const stopQueue = `${STOP_EXCHANGE}.${this.settings.executorId}`;
    await control.assertQueue(stopQueue, { exclusive: true, autoDelete: true });
    await control.bindQueue(stopQueue, STOP_EXCHANGE, "");
    await control.consume(stopQueue, (message) => message && this.onStop(message.content), { noAck: true });
    this.connection = connection;
    this.control = control;
    this.news = await connection.createChannel();
    this.connected = true;
    await this.mailbox.open(await connection.createChannel());
    this.sendReports();
    this.heartbeat();
  }

  /** A connection to the first broker URL that answers, in DAGYO_QUEUE's order. */
  private async open(): Promise<ChannelModel> {
    let last: unknown;
    for (const url of this.settings.queueUrls) {
      try {
        return await amqp.connect(url, { clientProperties: { connection_name: this.settings.executorId } });
      } catch (error) {
        last = error;
      }
    }
    throw last;
  }

  private lost(connection: ChannelModel): void {
    if (connection !== this.connection || this.closing) return;
    this.connected = false;
    this.connection = this.control = this.news = null;
    this.mailbox.lost();
    for (const run of this.runs.values()) {
      run.control.requestStop("the executor lost its broker connection", FAILURE_KIND_BROKER);
    }
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    let delay = RECONNECT_DELAY_S;
    while (!this.closing && !this.connected) {
      await new Promise((resolve) => setTimeout(resolve, delay * 1000));
      try {
        await this.connect();
        log.info("connected to the broker again");
      } catch (error) {
        log.warn(`could not reconnect (${String(error)}); trying again in ${delay * 2} s`);
        delay = Math.min(delay * 2, this.settings.reconnectMaxDelayS);
      }
    }
  }

  private onJob(descriptor: JobDescriptor): void {
    if (this.stoppedFlows.has(descriptor.flow_id)) {
      log.info(`dropped job ${descriptor.flow_id}/${descriptor.node}: its flow was stopped`);
      this.jobDone();
      return;
    }
    const run = new JobRun(descriptor);
    const why = refusal(descriptor, this.program.progdef.name, this.settings.version, this.settings.mailbox);
    this.runs.set(run.key, run);
    if (why) {
      log.error(`refused job ${descriptor.flow_id}/${descriptor.node}: ${why}`);
      this.ended(run, null, why);
      return;
    }
    if (this.settings.oneJob) {
      this.tookJob = true;
      this.mailbox.drain();
    }
    this.publish(this.news, EVENTS_EXCHANGE, jobStartedKey(descriptor.flow_id), "dagyo.v1.Event", {
      time: Date.now() / 1000,
      started: { job: { flow_id: descriptor.flow_id, node: descriptor.node }, executor: this.settings.executorId },
    });
    const connection = this.connection;
    if (connection === null) {
      run.control.requestStop("the executor lost its broker connection", FAILURE_KIND_BROKER);
      this.ended(run, null);
      return;
    }
    execute(run, this.program, connection, this.settings.executorId).then(
      (failure) => this.ended(run, failure),
      (error) => this.ended(run, { ...this.report(run, String(error)), kind: 1 }),
    );
  }

  private report(run: JobRun, error: string, kind = 1): FailureReport {
    const d = run.descriptor;
    return { flow_id: d.flow_id, node: d.node, progdef: d.progdef, executor: this.settings.executorId, error, traceback: "", kind, time: Date.now() / 1000 };
  }

  private ended(run: JobRun, failure: FailureReport | null, refused = ""): void {
    const d = run.descriptor;
    const ended: Record<string, unknown> = {
      job: { flow_id: d.flow_id, node: d.node },
      executor: this.settings.executorId,
      items_sent: run.itemsSent(),
      items_received: run.itemsReceived(),
      outcome: "",
      reason: "",
    };
    const control = run.control;
    if (refused) {
      failure = this.report(run, refused);
      ended.outcome = JOB_REFUSED;
    } else if (failure === null && control.stopReason) {
      failure = this.report(run, control.stopReason, control.stopKind);
      ended.outcome = control.stopKind === FAILURE_KIND_BROKER ? JOB_BROKER : JOB_EXECUTOR;
    } else if (failure !== null) {
      ended.outcome = JOB_PANICKED;
    } else if (control.stopped) {
      ended.outcome = JOB_STOPPED;
      ended.reason = `stopped by a Stop for flow ${d.flow_id} (${control.flowStopped})`;
    }
    if (failure !== null) {
      ended.reason = failure.error;
      log.error(`job ${d.flow_id}/${d.node} ${ended.outcome}: ${failure.error}${failure.traceback ? "\n" + failure.traceback : ""}`);
    }
    this.reports.set(run.key, { run, ended, failure, failureSent: false, slotFreed: false });
    this.sendReports();
  }

  private sending = false;

  /** Send the job ends the broker has not confirmed yet, oldest first. */
  private sendReports(): void {
    if (this.sending) return;
    this.sending = true;
    (async () => {
      for (const [key, end] of [...this.reports]) {
        if (!end.slotFreed) {
          end.slotFreed = true;
          this.jobDone();
        }
        if (end.failure !== null && !end.failureSent) {
          await this.publishConfirmed(FAILURES_EXCHANGE, failureKey(end.failure.flow_id), "dagyo.v1.FailureReport", { ...end.failure });
          end.failureSent = true;
        }
        await this.publishConfirmed(EVENTS_EXCHANGE, jobEndedKey(end.run.descriptor.flow_id), "dagyo.v1.Event", { time: Date.now() / 1000, ended: end.ended });
        this.reports.delete(key);
        this.runs.delete(key);
        this.wakeIdle();
      }
    })()
      .catch((error) => log.warn(`${this.reports.size} job ends not reported yet (${String(error)}); sent again once connected`))
      .finally(() => {
        this.sending = false;
      });
  }

  private encode(typename: string, message: Record<string, unknown>): Buffer {
    const type = wireType(typename);
    return Buffer.from(type.encode(type.fromObject(message)).finish());
  }

  private publish(channel: Channel | null, exchange: string, key: string, typename: string, message: Record<string, unknown>): void {
    if (channel === null) return;
    try {
      channel.publish(exchange, key, this.encode(typename, message), { contentType: PROTOBUF_CONTENT_TYPE, type: typename });
    } catch (error) {
      log.warn(`could not publish a ${typename}: ${String(error)}`);
    }
  }

  private publishConfirmed(exchange: string, key: string, typename: string, message: Record<string, unknown>): Promise<void> {
    const channel = this.control;
    if (channel === null) return Promise.reject(new Error("not connected to the broker"));
    return new Promise((resolve, reject) => {
      try {
        channel.publish(exchange, key, this.encode(typename, message), { contentType: PROTOBUF_CONTENT_TYPE, type: typename }, (error) =>
          error ? reject(error) : resolve(),
        );
      } catch (error) {
        reject(error);
      }
    });
  }

  private heartbeat(): void {
    if (!this.connected) return;
    this.publish(this.news, EVENTS_EXCHANGE, `heartbeat.${this.settings.executorId}`, "dagyo.v1.Event", {
      time: Date.now() / 1000,
      heartbeat: {
        executor: this.settings.executorId,
        progdef: this.program.progdef.name,
        version: this.settings.version,
        jobs: [...this.runs.values()].map((run) => ({
          flow_id: run.descriptor.flow_id,
          node: run.descriptor.node,
          items_sent: run.itemsSent(),
          items_received: run.itemsReceived(),
          blocked_s: run.blockedS(),
        })),
        draining: this.draining,
        mailbox: this.settings.mailbox,
        slots: this.settings.maxJobs,
      },
    });
  }

  private housekeep(): void {
    const horizon = Date.now() - STOPPED_FLOW_MEMORY_S * 1000;
    for (const [flow, at] of this.stoppedFlows) if (at < horizon) this.stoppedFlows.delete(flow);
    if (this.reports.size > 0 && this.connected) this.sendReports();
  }

  /** Set when the scheduler retires this executor's mailbox: the caller drains and exits 0. */
  onRetired: () => void = () => {};

  private onStop(body: Buffer): void {
    let stop: { flow_id: string; reason: string; retire_mailbox: string };
    try {
      stop = wireType("dagyo.v1.Stop").decode(body) as unknown as typeof stop;
    } catch {
      log.warn(`dropped a message of the stop queue that is not a dagyo.v1.Stop (${body.length} bytes)`);
      return;
    }
    if (stop.retire_mailbox) {
      if (stop.retire_mailbox === this.settings.mailbox) this.onRetired();
      return;
    }
    this.stoppedFlows.set(stop.flow_id, Date.now());
    for (const run of this.runs.values()) {
      if (run.descriptor.flow_id === stop.flow_id) run.control.stopForFlow(stop.reason);
    }
  }

  private wakeIdle(): void {
    const idle = this.idle;
    this.idle = [];
    for (const wake of idle) wake();
  }

  private waitIdle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Take no new jobs, let the running ones finish (stop them past the grace), then close. */
  async drain(force: { set: boolean; wake?: () => void }): Promise<void> {
    log.info(`draining: ${this.runs.size} jobs running`);
    this.mailbox.drain();
    this.heartbeat();
    const deadline = Date.now() + this.settings.drainGraceS * 1000;
    while (this.runs.size > 0 && Date.now() < deadline && !force.set) {
      await new Promise<void>((resolve) => {
        force.wake = resolve;
        void this.waitIdle(Math.min(200, Math.max(0, deadline - Date.now()))).then(resolve);
      });
    }
    const why = force.set ? "a second SIGTERM" : `the drain grace period of ${this.settings.drainGraceS} s`;
    for (const run of this.runs.values()) {
      run.control.requestStop(`the executor was shutting down and stopped this job after ${why}`);
    }
    const end = Date.now() + 10_000;
    while (this.runs.size > 0 && Date.now() < end) await this.waitIdle(200);
    for (const timer of this.timers) clearInterval(timer);
    // Confirmed: the scheduler must hear it before this process is gone.
    await this.publishConfirmed(EVENTS_EXCHANGE, `goodbye.${this.settings.executorId}`, "dagyo.v1.Event", {
      time: Date.now() / 1000,
      goodbye: { executor: this.settings.executorId, mailbox: this.settings.mailbox },
    }).catch((error) => log.warn(`could not say goodbye: ${String(error)}`));
    this.closing = true;
    await this.connection?.close().catch(() => {});
    log.info("drained");
  }
}

/** An executor id: the progdef, host, process and 4 random hex characters. */
export function executorId(progdef: string): string {
  return `${progdef}-${hostname()}-${process.pid}-${randomBytes(2).toString("hex")}`;
}
