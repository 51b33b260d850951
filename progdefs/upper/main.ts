// upper: upper-cases every text (function style). TypeScript the node executor transpiles
// on import (types stripped, no package.json needed beside it).
import type { Context } from "dagyo-executor";

/** A dagyo.types.Text as an item: a plain object of its fields. */
interface Text {
  text: string;
}

/** Upper-case one text. */
export function handler(ctx: Context, item: Text): Text {
  return { text: item.text.toUpperCase() };
}
