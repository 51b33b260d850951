// DAGYO_QUEUE's list of broker URLs as the Python executor reads it (docs/protocol.md).
import assert from "node:assert/strict";
import { test } from "node:test";

import { redacted, settingsFromEnv, splitUrls } from "../dist/settings.js";

test("a list is split only where another amqp:// or amqps:// URL starts", () => {
  assert.deepEqual(splitUrls("amqp://u:p;w@h1:5672/v; AMQPS://u:p@h2/v"), ["amqp://u:p;w@h1:5672/v", "AMQPS://u:p@h2/v"]);
  assert.deepEqual(splitUrls("amqp://h1/%2F"), ["amqp://h1/%2F"]);
});

test("every URL of a list has its password hidden, whatever the password holds", () => {
  assert.equal(
    redacted("amqp://guest:guest@127.0.0.1:1/%2F;amqp://guest:s3cret@localhost:5672/v"),
    "amqp://guest:***@127.0.0.1:1/%2F;amqp://guest:***@localhost:5672/v",
  );
  assert.equal(redacted("amqp://u:a/b@c;d#e@h/v"), "amqp://u:***@h/v");
  assert.equal(redacted("amqp://u@h/v;amqp://h2"), "amqp://u@h/v;amqp://h2");
});

test("a URL whose password holds an unencoded / is refused, the password hidden", () => {
  process.env.DAGYO_JOBS = "dagyo.mailbox.p.0123456789abcdef";
  const progdef = { name: "p", maxJobs: 1, drainGraceS: 60, directory: "." };
  for (const [queue, reason] of [
    ["amqp://h1/v;amqp://ada:s3;cr/t@h2/v", "the user name or password holds an unencoded # / ? or @"],
    ["http://h1/v", "it must start with amqp:// or amqps://"],
    ["amqp://u:p@h1:99999/v", "the port must be a number from 1 to 65535"],
    ["amqp://u:p@/v", "it names no host"],
  ]) {
    process.env.DAGYO_QUEUE = queue;
    assert.throws(
      () => settingsFromEnv(progdef),
      (error) => error.message.includes(`(${reason})`) && !error.message.includes("s3;cr") && !error.message.includes(":p@"),
    );
  }
  process.env.DAGYO_QUEUE = "amqp://ada:s3;cr%2Ft@h2:5672/v;amqps://h3";
  assert.deepEqual(settingsFromEnv(progdef).queueUrls, ["amqp://ada:s3;cr%2Ft@h2:5672/v", "amqps://h3"]);
});
