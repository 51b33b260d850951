// The frame checks of docs/protocol.md (Streams, Integrity), as a consumer applies them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { FRAME_RECEIVE_MAX_BYTES } from "../dist/constants.js";
import { admit, checkSize, countItems, StreamPosition } from "../dist/framecheck.js";

const frame = (seq, extra = {}) => ({ typename: "dagyo.types.Text", token: "t", seq, end_of_stream: false, ...extra });
const bytes = (...values) => Uint8Array.from(values);

test("frames are taken in seq order and a repeat with the same bytes is dropped", () => {
  const position = new StreamPosition("dagyo.types.Text", "t");
  assert.equal(admit(position, frame(0), bytes(1), "a.b -> c.d"), true);
  assert.equal(admit(position, frame(1), bytes(2), "a.b -> c.d"), true);
  assert.equal(admit(position, frame(0), bytes(1), "a.b -> c.d"), false);
  assert.equal(position.nextSeq, 2);
});

test("a gap, other contents, another typename, a forged token and a frame after the end panic naming the edge", () => {
  const where = "a.b -> c.d";
  const taken = () => {
    const position = new StreamPosition("dagyo.types.Text", "t");
    admit(position, frame(0), bytes(1), where);
    return position;
  };
  assert.throws(() => admit(taken(), frame(2), bytes(3), where), /a\.b -> c\.d: frame 2 arrived where frame 1 was due \(a frame was lost\)/);
  assert.throws(() => admit(taken(), frame(0), bytes(9), where), /arrived again with other contents/);
  assert.throws(() => admit(taken(), frame(1, { typename: "dagyo.types.Int64" }), bytes(3), where), /a frame of dagyo\.types\.Int64 arrived on a stream of dagyo\.types\.Text/);
  assert.throws(() => admit(taken(), frame(1, { token: "forged" }), bytes(3), where), /without the producer token/);
  const ended = new StreamPosition("dagyo.types.Text", "");
  admit(ended, frame(0, { end_of_stream: true }), bytes(1), where);
  assert.throws(() => admit(ended, frame(1), bytes(2), where), /frame 1 after end-of-stream/);
});

test("a frame past the bounds is refused before it is decoded", () => {
  const big = { length: FRAME_RECEIVE_MAX_BYTES + 1 };
  assert.throws(() => checkSize(big, "x -> y.z"), /x -> y\.z: a frame of \d+ bytes is larger than/);
  // 8193 empty items (field 1, length 0): one more than a frame may hold.
  const many = new Uint8Array(8193 * 2).map((_, i) => (i % 2 === 0 ? 0x0a : 0));
  assert.equal(countItems(many, 8192, "x"), 8193);
});
