/** /healthz, /readyz and /metrics over HTTP, as the Python executor serves them. */

import http from "node:http";
import type { AddressInfo } from "node:net";

import { EXECUTOR_METRICS_PORT } from "./constants.js";
import type { Executor } from "./executor.js";

/** Serve health for `executor`; a busy default port falls back to one the OS picks. */
export async function serveHealth(executor: Executor, port: number, host: string): Promise<number> {
  const server = http.createServer((request, response) => {
    const url = request.url ?? "/";
    if (url === "/healthz") return void response.writeHead(200).end("ok\n");
    if (url === "/readyz") {
      const ready = executor.connected && !executor.draining;
      return void response.writeHead(ready ? 200 : 503).end(ready ? "ready\n" : "not ready\n");
    }
    if (url === "/metrics") {
      response.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
      return void response.end(`# TYPE dagyo_executor_jobs_running gauge\ndagyo_executor_jobs_running ${executor.runs.size}\n`);
    }
    response.writeHead(404).end("not found\n");
  });
  const listen = (at: number) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(at, host, () => resolve((server.address() as AddressInfo).port));
    });
  server.unref();
  try {
    return await listen(port);
  } catch (error) {
    if (port !== EXECUTOR_METRICS_PORT || process.env.DAGYO_METRICS_PORT) throw error;
    return listen(0);
  }
}
