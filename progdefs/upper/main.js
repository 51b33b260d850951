// upper: upper-cases every text (function style). An ES module the node executor imports.

/**
 * Upper-case one text.
 * @param {import("dagyo-executor").Context} ctx
 * @param {{text: string}} item a dagyo.types.Text
 * @returns {{text: string}}
 */
export function handler(ctx, item) {
  return { text: item.text.toUpperCase() };
}
