// Items as plain objects: checked against their port's type when sent, read back as sent.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fromItem, toItem, wire } from "../dist/types.js";

const type = (name) => wire().lookupType(name);

test("an item goes out and comes back with its field names, int64 as a decimal string", () => {
  const int64 = type("dagyo.types.Int64");
  assert.deepEqual(toItem(int64, fromItem(int64, { value: "9007199254740993" }, "w")), { value: "9007199254740993" });
  assert.deepEqual(toItem(int64, fromItem(int64, { value: 7 }, "w")), { value: "7" });
  assert.deepEqual(toItem(int64, fromItem(int64, { value: -(2n ** 63n) }, "w")), { value: "-9223372036854775808" });
  const bytes = type("dagyo.types.Bytes");
  const back = toItem(bytes, fromItem(bytes, { data: Uint8Array.from([1, 2]) }, "w"));
  assert.ok(back.data instanceof Uint8Array);
  assert.deepEqual([...back.data], [1, 2]);
});

test("an item of the wrong shape is refused naming the port, the type and the field", () => {
  const text = type("dagyo.types.Text");
  assert.throws(() => fromItem(text, { txt: "a" }, "node n, output o"), /node n, output o: the item is not a dagyo\.types\.Text: it has no field 'txt'/);
  assert.throws(() => fromItem(text, { text: 3 }, "w"), /text must be a string/);
  assert.throws(() => fromItem(text, "a", "w"), /must be an object/);
  assert.throws(() => fromItem(type("dagyo.types.Int64"), { value: "1.5" }, "w"), /value must be a decimal string/);
});
