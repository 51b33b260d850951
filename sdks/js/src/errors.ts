/** The errors the executor raises into a job (the JavaScript twin of executor/core/errors.py). */

/** Raised in a job that was told to stop: its flow's Stop, a drain past its grace, the broker. */
export class Stopped extends Error {
  override name = "Stopped";
}

/** Raised when a frame or an item breaks the protocol: the job panics naming the edge. */
export class StreamCorrupt extends Error {
  override name = "StreamCorrupt";
}

/** Raised when the code sends an item that is not of its port's type, or returns the wrong thing. */
export class TypeMismatch extends Error {
  override name = "TypeMismatch";
}

/** A setting error: the executor prints it in one line and exits 2. */
export class SettingError extends Error {
  override name = "SettingError";
}

/** Raised for a progdef that does not load (its progdef.json, its module, its export). */
export class ProgdefInvalid extends Error {
  override name = "ProgdefInvalid";
}
