/**
 * Offloaded items (docs/protocol.md, Offloaded items): an item past DAGYO_OFFLOAD_BYTES is
 * kept in the object store DAGYO_OBJECTS and its frame carries an ObjectRef instead. This
 * executor has the folder store (`file:///path`, one file per object, written to a
 * temporary file and renamed into place); with an `s3://` store it sends every item inline
 * and refuses a reference, saying so.
 */

import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { ENV_OBJECTS, ENV_OFFLOAD_BYTES, ITEM_MAX_BYTES, OBJECTS_FLOWS_PREFIX, OFFLOAD_BYTES } from "./constants.js";
import { SettingError, StreamCorrupt } from "./errors.js";

/** An object reference as a frame carries it (`dagyo.v1.ObjectRef`). */
export interface ObjectRef {
  index: number;
  store: string;
  key: string;
  size: number;
  sha256: string;
}

/** A folder store: the object KEY is the file `root/KEY`. */
export class FileStore {
  readonly url: string;

  constructor(readonly root: string) {
    this.url = pathToFileURL(root).href;
  }

  put(key: string, data: Uint8Array): { size: number; sha256: string } {
    const file = path.join(this.root, ...key.split("/"));
    mkdirSync(path.dirname(file), { recursive: true });
    const temporary = path.join(path.dirname(file), `.put-${randomBytes(6).toString("hex")}`);
    try {
      writeFileSync(temporary, data);
      renameSync(temporary, file);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw new Error(`the object store ${this.url} cannot be written: ${String(error)}`);
    }
    return { size: data.length, sha256: createHash("sha256").update(data).digest("hex") };
  }

  /** The object's bytes, or null when there is none. */
  get(key: string): Uint8Array | null {
    try {
      return readFileSync(path.join(this.root, ...key.split("/")));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw new Error(`the object store ${this.url} cannot be read: ${String(error)}`);
    }
  }
}

/** Where this process offloads items, and from what size. */
export interface Offload {
  store: FileStore | null;
  /** The store URL this executor cannot use (an s3:// one); empty when none. */
  unsupported: string;
  threshold: number;
}

/** Read DAGYO_OBJECTS and DAGYO_OFFLOAD_BYTES. */
export function offloadFromEnv(): Offload {
  const raw = process.env[ENV_OFFLOAD_BYTES] ?? "";
  const threshold = raw === "" ? OFFLOAD_BYTES : Number(raw);
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > ITEM_MAX_BYTES) {
    throw new SettingError(
      `${ENV_OFFLOAD_BYTES}=${JSON.stringify(raw)} must be a size in bytes from 1 to ${ITEM_MAX_BYTES}, ` +
        "the largest item a frame carries inline",
    );
  }
  const url = process.env[ENV_OBJECTS] ?? "";
  if (!url) return { store: null, unsupported: "", threshold };
  if (url.startsWith("file://")) {
    return { store: new FileStore(path.resolve(fileURLToPath(url))), unsupported: "", threshold };
  }
  if (url.startsWith("s3://")) return { store: null, unsupported: url, threshold };
  throw new SettingError(`${ENV_OBJECTS}=${JSON.stringify(url)} is no object store: give file:///PATH or s3://BUCKET/PREFIX`);
}

const KEY_PART = /^[A-Za-z0-9._-]+$/;

function plainKey(key: string): boolean {
  return key.length > 0 && key.split("/").every((part) => KEY_PART.test(part) && part !== "." && part !== "..");
}

/** Replace a frame's offloaded items by their objects' bytes, each reference checked. */
export function fetchOffloaded(
  offload: Offload,
  items: Uint8Array[],
  references: ObjectRef[],
  flowId: string,
  where: string,
): void {
  const prefix = `${OBJECTS_FLOWS_PREFIX}${flowId}/`;
  for (const reference of references) {
    const what = `${where}: the offloaded item ${reference.index} of a frame (${reference.key})`;
    if (!(reference.index < items.length)) throw new StreamCorrupt(`${what} is not an item of the frame`);
    const store = offload.store;
    if (store === null) {
      const why = offload.unsupported
        ? `this executor reads only folder stores (file://), not ${offload.unsupported}`
        : "this process has none: set DAGYO_OBJECTS to it";
      throw new StreamCorrupt(`${what} is in the object store ${reference.store}, and ${why}`);
    }
    if (reference.store !== store.url) {
      throw new StreamCorrupt(`${what} names the object store ${reference.store}, not this flow's ${store.url}`);
    }
    if (!reference.key.startsWith(prefix) || !plainKey(reference.key)) {
      throw new StreamCorrupt(`${what} is outside the flow's objects (${prefix}): it was refused`);
    }
    const data = store.get(reference.key);
    if (data === null) throw new StreamCorrupt(`${what} is not in the object store ${store.url}`);
    if (data.length !== Number(String(reference.size))) {
      throw new StreamCorrupt(`${what} is ${data.length} bytes, not the ${reference.size} sent`);
    }
    if (createHash("sha256").update(data).digest("hex") !== reference.sha256) {
      throw new StreamCorrupt(`${what} does not have the SHA-256 sent (${reference.sha256})`);
    }
    items[reference.index] = data;
  }
}
