/**
 * A function progdef's items several at a time (`"concurrency": N` in progdef.json), results
 * still in input order: up to N handler calls of one job are pending at once, no item is
 * started more than N ahead of the oldest unfinished one, and an item's results are sent
 * once every item before it has been sent (a slow item holds the later ones back). An
 * item that fails for good goes to `fail` when it is the oldest; when `fail` throws (no
 * error port), the job panics and the items after it are never sent.
 */

import type { JobControl } from "./control.js";
import type { Item } from "./types.js";

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Flight {
  item: Item;
  raw: Uint8Array | undefined;
  done: boolean;
  outcome: Promise<Outcome>;
}

/** What running items in flight needs of its job. */
export interface InFlightParts {
  concurrency: number;
  control: JobControl;
  /** The next frame's items, or null at the end of the input. */
  next: () => Promise<Item[] | null>;
  /** The serialized items of the frame `next` returned last. */
  raws: () => Uint8Array[];
  /** Call the handler on one item, with its retries. */
  start: (item: Item) => Promise<unknown>;
  /** The items a handler returned, to send (throws for a value that is no item). */
  results: (value: unknown) => Item[];
  /** An item failed for good: send its Error to the error port, or throw (a panic). */
  fail: (item: Item, raw: Uint8Array | undefined, error: unknown) => Promise<void>;
  send: (items: Item[]) => Promise<void>;
}

/** Run the items of a job's input, up to `concurrency` at once, until the input ends. */
export async function runInFlight(parts: InFlightParts): Promise<void> {
  const { concurrency, control } = parts;
  const flight: Flight[] = [];
  const taken: [Item, Uint8Array | undefined][] = [];
  let ended = false;
  let readError: { error: unknown } | null = null;
  let reading: Promise<void> | null = null;
  let forget = () => {};
  const stopped = new Promise<void>((resolve) => {
    forget = control.listen(resolve);
  });
  const read = () => {
    const promise = parts.next().then(
      (batch) => {
        if (batch === null) {
          ended = true;
          return;
        }
        const raws = parts.raws();
        batch.forEach((item, index) => taken.push([item, raws[index]]));
      },
      (error) => {
        readError = { error };
      },
    );
    reading = promise.finally(() => {
      reading = null;
    });
  };
  try {
    for (;;) {
      while (taken.length > 0 && flight.length < concurrency) {
        const [item, raw] = taken.shift()!;
        const entry: Flight = { item, raw, done: false, outcome: Promise.resolve({ ok: true, value: undefined }) };
        entry.outcome = parts.start(item).then(
          (value): Outcome => {
            entry.done = true;
            return { ok: true, value };
          },
          (error): Outcome => {
            entry.done = true;
            return { ok: false, error };
          },
        );
        flight.push(entry);
      }
      let results: Item[] = [];
      while (flight.length > 0 && flight[0].done) {
        const { item, raw, outcome } = flight.shift()!;
        const settled = await outcome;
        if (settled.ok) {
          results.push(...parts.results(settled.value));
          continue;
        }
        if (results.length > 0) await parts.send(results);
        results = [];
        await parts.fail(item, raw, settled.error);
      }
      if (results.length > 0) await parts.send(results);
      if (readError !== null) throw (readError as { error: unknown }).error;
      control.check();
      if (ended && taken.length === 0 && flight.length === 0) return;
      if (taken.length > 0 && flight.length < concurrency) continue;
      const waits: Promise<unknown>[] = [stopped];
      if (taken.length === 0 && flight.length < concurrency && !ended) {
        if (reading === null) read();
        waits.push(reading!);
      }
      if (flight.length > 0) waits.push(flight[0].outcome);
      await Promise.race(waits);
    }
  } finally {
    forget();
  }
}
