// strict: passes items on; an item starting with 'bad' fails to the error port.

/** Pass the item on; throw from conformance_reject on an item starting with 'bad'. */
export function handler(ctx, item) {
  if (item.text.startsWith("bad")) conformance_reject(item.text);
  return item;
}

/** The author's frame an Error's stack must show. */
function conformance_reject(text) {
  throw new Error(`rejected ${text}`);
}
