// pool: passes items on after a delay of their own, up to 8 at once; an item starting with
// 'bad' fails to the error port.

/** Wait the item's delay (its last digit: 0-9 times 3 ms), then pass it on; throw from
 * conformance_reject on an item starting with 'bad'. */
export async function handler(ctx, item) {
  await new Promise((resolve) => setTimeout(resolve, Number(item.text.at(-1)) * 3));
  if (item.text.startsWith("bad")) conformance_reject(item.text);
  return item;
}

/** The author's frame an Error's stack must show. */
function conformance_reject(text) {
  throw new Error(`rejected ${text}`);
}
