/**
 * The messages: dagyo's own (proto/), the built-in item types, the well-known ones, and the
 * custom types a job brings in its descriptor set. Items are plain objects with the
 * message's field names: int64 as decimal strings (as protobuf's JSON form has them),
 * bytes as Uint8Array, enums by name; an item is checked against its port's type when sent.
 */

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

import protobuf from "protobufjs";
import descriptorExtension from "protobufjs/ext/descriptor/index.js";

import { TypeMismatch } from "./errors.js";

/** A plain object holding one item's fields. */
export type Item = Record<string, unknown>;

const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DESCRIPTOR_PROTO = path.join(
  SDK_DIR,
  "node_modules/protobufjs/google/protobuf/descriptor.proto",
);
const WELL_KNOWN = Object.keys(protobuf.common).filter((name) => name.endsWith(".proto"));
const BUILT_IN = ["dagyo/types.proto", ...WELL_KNOWN];
const WIRE = ["dagyo/v1/job.proto", "dagyo/v1/frame.proto", "dagyo/v1/events.proto", "dagyo/v1/failure.proto"];

/** The folder of dagyo's .proto files: DAGYO_PROTO_DIR, else the SDK's, else the repository's. */
export function protoDir(): string {
  const candidates = [
    process.env.DAGYO_PROTO_DIR ?? "",
    path.join(SDK_DIR, "proto"),
    path.resolve(SDK_DIR, "../../proto"),
  ];
  const found = candidates.find((dir) => dir && existsSync(path.join(dir, "dagyo/types.proto")));
  if (found === undefined) {
    throw new Error(
      "dagyo's .proto files were not found: set DAGYO_PROTO_DIR to the folder holding " +
        "dagyo/types.proto (the repository's proto/)",
    );
  }
  return found;
}

function loadInto(root: protobuf.Root, files: string[]): protobuf.Root {
  const dir = protoDir();
  root.resolvePath = (_origin: string, target: string) => {
    if (target in protobuf.common) return target;
    if (target === "google/protobuf/descriptor.proto") return DESCRIPTOR_PROTO;
    return path.join(dir, target);
  };
  root.loadSync(files, { keepCase: true });
  return root;
}

let wireRoot: protobuf.Root | undefined;

/** The root holding the wire messages (dagyo.v1.*) and the built-in item types. */
export function wire(): protobuf.Root {
  if (wireRoot === undefined) {
    wireRoot = loadInto(new protobuf.Root(), [...WIRE, ...BUILT_IN]);
    wireRoot.resolveAll();
  }
  return wireRoot;
}

/** One wire message type, e.g. `dagyo.v1.Frame`. */
export function wireType(name: string): protobuf.Type {
  return wire().lookupType(name);
}

const jobRoots = new Map<string, protobuf.Root>();

/**
 * The types of one job: the built-in ones, plus those of its descriptor set (kept for later
 * jobs bringing the very same files, never mixed into the executor's own).
 */
export function jobTypes(types: Uint8Array | undefined, source: string): protobuf.Root {
  if (types === undefined || types.length === 0) return wire();
  const key = createHash("sha256").update(types).digest("hex");
  let root = jobRoots.get(key);
  if (root === undefined) {
    try {
      const set = descriptorExtension.FileDescriptorSet.decode(types) as unknown as {
        file: Array<{ name: string }>;
      };
      for (const file of set.file) {
        if (BUILT_IN.includes(file.name) || WIRE.includes(file.name)) {
          throw new Error(
            `the job's ${file.name} is one this executor has built in: a job may not bring it`,
          );
        }
      }
      root = loadInto(new protobuf.Root(), BUILT_IN);
      addFiles(root, set as unknown as DescriptorSet);
      root.resolveAll();
    } catch (error) {
      throw new TypeMismatch(`${source}: the job's types do not load: ${String(error)}`);
    }
    jobRoots.set(key, root);
  }
  return root;
}

interface DescriptorSet {
  file: Array<{ name: string; package?: string; syntax?: string; messageType?: unknown[]; enumType?: unknown[] }>;
}

type FromDescriptor = { fromDescriptor(descriptor: unknown, edition: string): protobuf.ReflectionObject };

/** Add a descriptor set's files to a root already holding what they import (as the
 * descriptor extension's Root.fromDescriptor does, which makes a root of its own). */
function addFiles(root: protobuf.Root, set: DescriptorSet): void {
  for (const file of set.file) {
    const namespace = file.package ? root.define(file.package) : root;
    root.files.push(file.name);
    const edition = file.syntax === "proto3" ? "proto3" : "proto2";
    for (const message of file.messageType ?? []) {
      namespace.add((protobuf.Type as unknown as FromDescriptor).fromDescriptor(message, edition));
    }
    for (const enumeration of file.enumType ?? []) {
      namespace.add((protobuf.Enum as unknown as FromDescriptor).fromDescriptor(enumeration, edition));
    }
  }
}

/** The message type of a typename, or a TypeMismatch naming it. */
export function messageType(root: protobuf.Root, typename: string, where: string): protobuf.Type {
  try {
    return root.lookupType(typename);
  } catch {
    throw new TypeMismatch(`${where}: no message type ${typename} is known to this executor or the job`);
  }
}

/** An item as the plain object the author's code sees. */
export function toItem(type: protobuf.Type, data: Uint8Array): Item {
  return type.toObject(type.decode(data), {
    longs: String,
    enums: String,
    defaults: true,
    arrays: true,
    objects: true,
  }) as Item;
}

/** An item's bytes, after checking it against its type. */
export function fromItem(type: protobuf.Type, item: unknown, where: string): Uint8Array {
  sawBigint = false;
  const problem = checkMessage(type, item, "");
  if (problem !== null) {
    throw new TypeMismatch(`${where}: the item is not a ${type.fullName.replace(/^\./, "")}: ${problem}`);
  }
  // BigInts (64-bit integers given as such) become decimal strings, as fromObject takes them.
  const value = sawBigint ? normalise(item) : item;
  return type.encode(type.fromObject(value as Item)).finish();
}

// Set by a check that met a BigInt: the item is normalised before it is encoded.
let sawBigint = false;

function normalise(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
  }
  return value;
}

const INT32 = new Set(["int32", "sint32", "sfixed32"]);
const UINT32 = new Set(["uint32", "fixed32"]);
const INT64 = new Set(["int64", "sint64", "sfixed64"]);
const UINT64 = new Set(["uint64", "fixed64"]);

function checkMessage(type: protobuf.Type, value: unknown, at: string): string | null {
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array) {
    return `${at || "the item"} must be an object of the message's fields, not ${describe(value)}`;
  }
  const fields = type.fields;
  for (const name in value) {
    const fieldValue = (value as Record<string, unknown>)[name];
    const field = fields[name];
    const here = at ? `${at}.${name}` : name;
    if (field === undefined) {
      const known = Object.keys(type.fields).join(", ");
      return `it has no field '${here}' (its fields: ${known})`;
    }
    if (fieldValue === null || fieldValue === undefined) continue;
    if (!field.resolved) field.resolve();
    if (field.map) {
      if (typeof fieldValue !== "object" || Array.isArray(fieldValue)) return `${here} must be an object (a map)`;
      for (const [key, entry] of Object.entries(fieldValue)) {
        const problem = checkValue(field, entry, `${here}[${JSON.stringify(key)}]`);
        if (problem !== null) return problem;
      }
    } else if (field.repeated) {
      if (!Array.isArray(fieldValue)) return `${here} must be an array, not ${describe(fieldValue)}`;
      for (const [index, entry] of fieldValue.entries()) {
        const problem = checkValue(field, entry, `${here}[${index}]`);
        if (problem !== null) return problem;
      }
    } else {
      const problem = checkValue(field, fieldValue, here);
      if (problem !== null) return problem;
    }
  }
  return null;
}

function checkValue(field: protobuf.Field, value: unknown, at: string): string | null {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return checkMessage(resolved, value, at);
  if (resolved instanceof protobuf.Enum) {
    if (typeof value === "string" && value in resolved.values) return null;
    if (Number.isInteger(value)) return null;
    return `${at} must be one of ${Object.keys(resolved.values).join(", ")}, not ${describe(value)}`;
  }
  const kind = field.type;
  const fail = (wanted: string) => `${at} must be ${wanted} (${kind}), not ${describe(value)}`;
  if (kind === "string") return typeof value === "string" ? null : fail("a string");
  if (typeof value === "bigint") sawBigint = true;
  if (kind === "bool") return typeof value === "boolean" ? null : fail("a boolean");
  if (kind === "bytes") return value instanceof Uint8Array ? null : fail("a Uint8Array");
  if (kind === "double" || kind === "float") return typeof value === "number" ? null : fail("a number");
  if (INT32.has(kind) || UINT32.has(kind)) {
    const low = UINT32.has(kind) ? 0 : -(2 ** 31);
    const high = UINT32.has(kind) ? 2 ** 32 - 1 : 2 ** 31 - 1;
    return Number.isInteger(value) && (value as number) >= low && (value as number) <= high
      ? null
      : fail("an integer in range");
  }
  if (INT64.has(kind) || UINT64.has(kind)) {
    const text = typeof value === "number" && Number.isSafeInteger(value) ? String(value)
      : typeof value === "bigint" ? value.toString()
      : typeof value === "string" ? value : "";
    const pattern = UINT64.has(kind) ? /^[0-9]+$/ : /^-?[0-9]+$/;
    if (!pattern.test(text)) return fail("a decimal string or a safe integer");
    const number = BigInt(text);
    const fits = UINT64.has(kind) ? number < 2n ** 64n : number >= -(2n ** 63n) && number < 2n ** 63n;
    return fits ? null : fail("a 64-bit integer");
  }
  return null;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Uint8Array) return "a Uint8Array";
  if (typeof value === "string") return `the string ${JSON.stringify(value.slice(0, 40))}`;
  return `${typeof value} ${String(value).slice(0, 40)}`;
}
