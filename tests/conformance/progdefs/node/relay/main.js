// relay: passes every item on unchanged; panics on the item 'panic'.

/** Pass the item on; throw from conformance_panic on the item 'panic'. */
export function handler(ctx, item) {
  if (item.text === "panic") conformance_panic();
  return item;
}

/** The author's frame a panic's stack must show. */
function conformance_panic() {
  throw new Error("asked to panic");
}
