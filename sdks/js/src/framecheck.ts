/**
 * What a consumer checks of every frame it takes (docs/protocol.md, Streams, Integrity):
 * its bounds before anything is decoded, its producer token, its typename and its place
 * in the stream. The JavaScript twin of executor/core/framecheck.py.
 */

import { crc32 } from "node:zlib";

import {
  FRAME_MAX_BYTES,
  FRAME_MAX_ITEMS,
  FRAME_RECEIVE_MAX_BYTES,
  REPEAT_WINDOW_FRAMES,
} from "./constants.js";
import { StreamCorrupt } from "./errors.js";

// Frames up to this size are parsed before their items are counted.
const PARSE_FIRST_BYTES = 2 * FRAME_MAX_BYTES;

/** Where a consumer is in one stream. */
export class StreamPosition {
  nextSeq = 0;
  ended = false;
  /** [seq, crc32, size] of the last frames taken, oldest first. */
  recent: Array<[number, number, number]> = [];

  constructor(
    readonly typename: string,
    readonly token: string = "",
  ) {}
}

/** The fields of a frame that are checked. */
export interface FrameHead {
  typename: string;
  token: string;
  seq: number;
  end_of_stream: boolean;
}

/** Refuse a frame past the bounds before anything of it is decoded. */
export function checkSize(data: Uint8Array, where: string): void {
  const size = data.length;
  if (size > FRAME_RECEIVE_MAX_BYTES) {
    throw new StreamCorrupt(
      `${where}: a frame of ${size} bytes is larger than the ${FRAME_RECEIVE_MAX_BYTES} a ` +
        "frame may be (docs/protocol.md, Streams); it was refused unread",
    );
  }
  if (size > PARSE_FIRST_BYTES) checkCount(countItems(data, FRAME_MAX_ITEMS, where), where);
}

/** Refuse a frame of more items than a producer may put in one. */
export function checkCount(items: number, where: string): void {
  if (items > FRAME_MAX_ITEMS) {
    throw new StreamCorrupt(
      `${where}: a frame of more than ${FRAME_MAX_ITEMS} items, the most a frame may ` +
        "hold (docs/protocol.md, Streams); it was refused unread",
    );
  }
}

/**
 * Check a parsed frame against the stream's position and move the position on.
 *
 * @returns true for a new frame, to take; false for one taken already, delivered again
 *   with the same bytes, to drop.
 * @throws StreamCorrupt naming `where`.
 */
export function admit(
  position: StreamPosition,
  frame: FrameHead,
  data: Uint8Array,
  where: string,
): boolean {
  if (position.token && frame.token !== position.token) {
    throw new StreamCorrupt(
      `${where}: a frame without the producer token the scheduler gave this stream ` +
        "(written by someone other than its producer: a forgery, or another flow's job); " +
        "it was refused",
    );
  }
  if (frame.typename !== position.typename) {
    throw new StreamCorrupt(
      `${where}: a frame of ${frame.typename || "no typename"} arrived on a stream of ` +
        position.typename,
    );
  }
  const seq = frame.seq;
  if (seq < position.nextSeq) {
    const taken = position.recent.find((entry) => entry[0] === seq);
    if (taken !== undefined) {
      if (taken[1] === crc32(data) && taken[2] === data.length) return false;
      throw new StreamCorrupt(
        `${where}: frame ${seq} arrived again with other contents than the frame ${seq} ` +
          "taken already (a different frame under a seq already taken)",
      );
    }
  }
  if (position.ended) throw new StreamCorrupt(`${where}: frame ${seq} after end-of-stream`);
  if (seq !== position.nextSeq) {
    const what = seq > position.nextSeq ? "lost" : "repeated";
    throw new StreamCorrupt(
      `${where}: frame ${seq} arrived where frame ${position.nextSeq} was due ` +
        `(a frame was ${what})`,
    );
  }
  position.recent.push([seq, crc32(data), data.length]);
  if (position.recent.length > REPEAT_WINDOW_FRAMES) position.recent.shift();
  position.nextSeq = seq + 1;
  position.ended = Boolean(frame.end_of_stream);
  return true;
}

/** The items (field 1) of a serialized frame, counting no further than `limit + 1`. */
export function countItems(data: Uint8Array, limit: number, where: string): number {
  let position = 0;
  let items = 0;
  const end = data.length;
  const varint = (): number => {
    let value = 0;
    let factor = 1;
    for (let shift = 0; position < end && shift < 64; shift += 7) {
      const byte = data[position++];
      value += (byte & 0x7f) * factor;
      if (!(byte & 0x80)) return value;
      factor *= 128;
    }
    throw new StreamCorrupt(`${where}: received a malformed frame (a varint runs past its end)`);
  };
  while (position < end && items <= limit) {
    const key = varint();
    const wireType = key % 8;
    if (wireType === 0) varint();
    else if (wireType === 2) {
      const length = varint();
      position += length;
      if (Math.floor(key / 8) === 1) items += 1;
    } else if (wireType === 1) position += 8;
    else if (wireType === 5) position += 4;
    else throw new StreamCorrupt(`${where}: received a malformed frame (wire type ${wireType})`);
  }
  if (position > end) throw new StreamCorrupt(`${where}: received a malformed frame (truncated)`);
  return items;
}
