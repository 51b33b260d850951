/** The dagyo executor for Node.js: what a progdef's code imports (types only, mostly). */

export type { Context, Logger } from "./sdk.js";
export { Job } from "./sdk.js";
export type { InputStream } from "./inputs.js";
export type { OutputStream } from "./outputs.js";
export type { Item } from "./types.js";
export { Stopped, StreamCorrupt, TypeMismatch, ProgdefInvalid } from "./errors.js";
