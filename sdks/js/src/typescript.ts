/**
 * Module hooks that let a progdef's code be TypeScript: a `.ts` (or `.mts`) module is
 * transpiled when it is imported (types stripped, no type check, an inline source map so
 * stack traces name its own lines), and an import of `./x.js` finds `./x.ts` when there is
 * no `x.js`, as TypeScript's own convention writes it. Registered by the executor with
 * `module.register` before it imports the progdef's module.
 */

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

import ts from "typescript";

type Next<A extends unknown[], R> = (...args: A) => Promise<R>;
interface Resolved {
  url: string;
  format?: string | null;
  shortCircuit?: boolean;
}
interface Loaded {
  format: string;
  source?: string | ArrayBuffer | Uint8Array;
  shortCircuit?: boolean;
}

const TYPESCRIPT = /\.m?ts$/;

export async function resolve(
  specifier: string,
  context: { parentURL?: string },
  next: Next<[string, { parentURL?: string }], Resolved>,
): Promise<Resolved> {
  const parent = context.parentURL;
  if (parent !== undefined && TYPESCRIPT.test(parent) && /^\.{1,2}\//.test(specifier) && /\.m?js$/.test(specifier)) {
    const asTypeScript = new URL(specifier.replace(/js$/, "ts"), parent);
    if (!existsSync(fileURLToPath(new URL(specifier, parent))) && existsSync(fileURLToPath(asTypeScript))) {
      return { url: asTypeScript.href, shortCircuit: true };
    }
  }
  return next(specifier, context);
}

export async function load(
  url: string,
  context: { format?: string | null },
  next: Next<[string, { format?: string | null }], Loaded>,
): Promise<Loaded> {
  if (!url.startsWith("file:") || !TYPESCRIPT.test(url)) return next(url, context);
  const path = fileURLToPath(url);
  const output = ts.transpileModule(await readFile(path, "utf8"), {
    fileName: path,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      inlineSourceMap: true,
      inlineSources: true,
    },
  });
  return { format: "module", source: output.outputText, shortCircuit: true };
}
