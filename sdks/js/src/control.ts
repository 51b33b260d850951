/** A job's stop signal: what every wait of the job races against. */

import { FAILURE_KIND_PANIC } from "./constants.js";
import { Stopped } from "./errors.js";

export class JobControl {
  stopped = false;
  /** Why the executor stopped the job itself (a drain past its grace, the broker): its failure. */
  stopReason = "";
  stopKind = FAILURE_KIND_PANIC;
  /** Set when its flow's Stop stopped it: the Stop's reason. */
  flowStopped = "";
  private listeners = new Set<() => void>();

  /** Tell the job to stop; `reason` is set when the stop is a failure to report. */
  requestStop(reason = "", kind = FAILURE_KIND_PANIC): void {
    if (reason && !this.stopped) {
      this.stopReason = reason;
      this.stopKind = kind;
    }
    this.stopped = true;
    for (const listener of [...this.listeners]) listener();
  }

  /** Stop the job for its flow's Stop. */
  stopForFlow(reason: string): void {
    if (!this.stopped) this.flowStopped = reason || "no reason given";
    this.requestStop();
  }

  /** Raise Stopped when the job was told to stop. */
  check(): void {
    if (this.stopped) throw new Stopped(this.stopReason || "the job was stopped");
  }

  /** Call `listener` when the job stops; returns the function that forgets it. */
  listen(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Wait `ms` milliseconds, or raise Stopped as soon as the job stops. */
  async sleep(ms: number): Promise<void> {
    this.check();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const forget = this.listen(done);
      function done() {
        clearTimeout(timer);
        forget();
        resolve();
      }
    });
    this.check();
  }
}
