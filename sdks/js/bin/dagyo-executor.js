#!/usr/bin/env node
// The node executor: `dagyo-executor PROGDEF_DIR [--one-job]` (see docs/protocol.md).
import { existsSync } from "node:fs";

const built = new URL("../dist/main.js", import.meta.url);
if (!existsSync(built)) {
  console.error("dagyo-executor: the SDK is not built: run `npm ci` in sdks/js");
  process.exit(2);
}
const { main } = await import(built.href);
process.exit(await main(process.argv.slice(2)));
