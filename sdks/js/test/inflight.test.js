// A function progdef's items in flight ("concurrency": N): results in input order, at most N
// pending at once, failures per item, a panic holding back every later item.
import assert from "node:assert/strict";
import { test } from "node:test";

import { JobControl } from "../dist/control.js";
import { runInFlight } from "../dist/inflight.js";

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parts({ frames, concurrency, handler, fail }) {
  const queue = frames.map((frame) => frame.map((text) => ({ text })));
  const sent = [];
  const failed = [];
  let pending = 0;
  let most = 0;
  return {
    sent,
    failed,
    most: () => most,
    run: {
      concurrency,
      control: new JobControl(),
      next: async () => {
        await pause(1);
        return queue.length > 0 ? queue.shift() : null;
      },
      raws: () => [],
      start: async (item) => {
        pending += 1;
        most = Math.max(most, pending);
        try {
          return await handler(item);
        } finally {
          pending -= 1;
        }
      },
      results: (value) => (value === undefined ? [] : [value]),
      fail:
        fail ??
        (async (item, raw, error) => {
          failed.push([item.text, error.message]);
        }),
      send: async (items) => {
        sent.push(...items.map((item) => item.text));
      },
    },
  };
}

const texts = (n, prefix = "t") => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

test("random delays, 16 in flight: every result in input order, never more than 16 pending", async () => {
  const all = texts(200);
  const job = parts({
    frames: [all.slice(0, 70), all.slice(70, 71), all.slice(71)],
    concurrency: 16,
    handler: async (item) => {
      await pause(Math.random() * 10);
      return { text: item.text.toUpperCase() };
    },
  });
  await runInFlight(job.run);
  assert.deepEqual(job.sent, all.map((t) => t.toUpperCase()));
  assert.equal(job.most(), 16);
});

test("a failed item goes to fail in its place, the others go on", async () => {
  const all = texts(40);
  const job = parts({
    frames: [all],
    concurrency: 8,
    handler: async (item) => {
      await pause(Math.random() * 5);
      if (item.text.endsWith("7")) throw new Error(`rejected ${item.text}`);
      return item;
    },
  });
  await runInFlight(job.run);
  assert.deepEqual(job.sent, all.filter((t) => !t.endsWith("7")));
  assert.deepEqual(job.failed.map(([text]) => text), ["t-7", "t-17", "t-27", "t-37"]);
});

test("a panic is raised once its item is the oldest; no later item is sent", async () => {
  const job = parts({
    frames: [["a", "b", "panic", ...texts(20, "after")]],
    concurrency: 8,
    handler: async (item) => {
      if (item.text === "panic") {
        await pause(50);
        throw new Error("asked to panic");
      }
      return item;
    },
    fail: async (item, raw, error) => {
      throw error;
    },
  });
  await assert.rejects(runInFlight(job.run), /asked to panic/);
  assert.deepEqual(job.sent, ["a", "b"]);
});

test("a stop ends the wait for the items in flight with Stopped", async () => {
  const job = parts({
    frames: [texts(4)],
    concurrency: 4,
    handler: () => new Promise(() => {}),
  });
  const running = runInFlight(job.run);
  await pause(20);
  job.run.control.requestStop();
  await assert.rejects(running, (error) => error.name === "Stopped" || /stopped/.test(error.message));
  assert.deepEqual(job.sent, []);
});

test("progdef.json's concurrency is read, and a bad one refused naming the progdef and the field", async () => {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const path = await import("node:path");
  const { loadProgdef } = await import("../dist/program.js");
  const folder = (fields) => {
    const dir = mkdtempSync(path.join(tmpdir(), "dagyo-inflight-"));
    const progdef = { name: "p", runtime: "node", run: "main.js:handler", style: "function", ...fields };
    writeFileSync(path.join(dir, "progdef.json"), JSON.stringify(progdef));
    return dir;
  };
  assert.equal(loadProgdef(folder({})).concurrency, 1);
  assert.equal(loadProgdef(folder({ concurrency: 64 })).concurrency, 64);
  for (const bad of [0, 1001, 2.5, "8"]) {
    assert.throws(
      () => loadProgdef(folder({ concurrency: bad })),
      new RegExp(`progdef 'p': concurrency ${JSON.stringify(bad)} must be a whole number from 1 to 1000`),
    );
  }
});
