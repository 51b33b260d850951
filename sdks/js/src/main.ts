/**
 * `dagyo-executor PROGDEF_DIR [--one-job]`: serve one node progdef until SIGTERM, then
 * drain and exit 0 (a second SIGTERM stops the running jobs at once). Exit 2 for a bad
 * progdef or setting, 3 when the broker cannot be reached at start.
 */

import { register } from "node:module";

import { Executor } from "./executor.js";
import { serveHealth } from "./health.js";
import type { Program } from "./job.js";
import { offloadFromEnv } from "./objects.js";
import { loadProgdef, readSecrets, resolveTarget } from "./program.js";
import { makeLogger } from "./sdk.js";
import { redacted, settingsFromEnv } from "./settings.js";

const USAGE = "usage: dagyo-executor PROGDEF_DIR [--one-job]";

/** Run the executor; resolves to the exit status. */
export async function main(argv: string[]): Promise<number> {
  const args = argv.filter((arg) => arg !== "--one-job");
  if (args.length !== 1 || args[0].startsWith("-")) {
    console.error(USAGE);
    return 2;
  }
  let executor: Executor;
  // A progdef's code may be TypeScript: transpiled on import, its stack traces its own lines.
  process.setSourceMapsEnabled(true);
  register(new URL("./typescript.js", import.meta.url));
  try {
    const progdef = loadProgdef(args[0]);
    const settings = settingsFromEnv(progdef, argv.includes("--one-job"));
    const secrets = readSecrets(progdef);
    const run = await resolveTarget(progdef, progdef.run);
    const context = { progdef: progdef.name, logger: makeLogger(`dagyo.progdef.${progdef.name}`), secrets: { ...secrets } };
    const init = progdef.init ? await resolveTarget(progdef, progdef.init) : await optionalInit(progdef);
    if (init !== undefined) await init(context); // before ready: no job pays for it
    const program: Program = { progdef, run, context, secrets, offload: offloadFromEnv() };
    executor = new Executor(program, settings);
  } catch (error) {
    console.error(`dagyo-executor: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  try {
    await executor.start();
  } catch (error) {
    console.error(`dagyo-executor: cannot reach the broker at ${redacted(executor.settings.queueUrl)}: ${String(error)}`);
    return 3;
  }
  if (executor.settings.metricsPort >= 0) {
    await serveHealth(executor, executor.settings.metricsPort, executor.settings.metricsHost);
  }
  console.error(`dagyo-executor: ${executor.settings.executorId} pulling ${executor.settings.mailbox}`);
  const force: { set: boolean; wake?: () => void } = { set: false };
  await new Promise<void>((resolve) => {
    let signalled = false;
    const onSignal = () => {
      if (signalled) {
        force.set = true;
        force.wake?.();
        return;
      }
      signalled = true;
      resolve();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    executor.onRetired = () => {
      console.error(`dagyo-executor: the scheduler retired mailbox ${executor.settings.mailbox}: draining`);
      onSignal();
    };
    if (executor.settings.oneJob) {
      const idleUntil = Date.now() + executor.settings.oneJobIdleS * 1000;
      const timer = setInterval(() => {
        if ((executor.tookJob && executor.runs.size === 0) || (!executor.tookJob && Date.now() > idleUntil)) {
          clearInterval(timer);
          onSignal();
        }
      }, 100);
    }
  });
  await executor.drain(force);
  return 0;
}

async function optionalInit(progdef: ReturnType<typeof loadProgdef>) {
  const file = progdef.run.slice(0, progdef.run.lastIndexOf(":"));
  try {
    return await resolveTarget(progdef, `${file}:init`);
  } catch {
    return undefined;
  }
}
