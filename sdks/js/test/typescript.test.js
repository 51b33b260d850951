// A progdef's TypeScript: transpiled on import, `./x.js` finding `x.ts`, stack traces on
// the .ts lines.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { register } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

process.setSourceMapsEnabled(true);
register(new URL("../dist/typescript.js", import.meta.url));

test("a TypeScript module imports another as ./x.js and throws on its own lines", async () => {
  const folder = mkdtempSync(path.join(tmpdir(), "dagyo-ts-"));
  writeFileSync(
    path.join(folder, "shout.ts"),
    "export function shout(text: string): string {\n  if (!text) throw new Error('nothing to shout');\n  return text.toUpperCase();\n}\n",
  );
  writeFileSync(
    path.join(folder, "main.ts"),
    "import { shout } from './shout.js';\ntype Text = { text: string };\nexport function handler(ctx: unknown, item: Text): Text {\n  return { text: shout(item.text) };\n}\n",
  );
  const module = await import(pathToFileURL(path.join(folder, "main.ts")).href);
  assert.deepEqual(module.handler(null, { text: "ada" }), { text: "ADA" });
  const error = (() => {
    try {
      module.handler(null, { text: "" });
    } catch (e) {
      return e;
    }
  })();
  assert.match(error.stack, /shout\.ts:2/);
});
