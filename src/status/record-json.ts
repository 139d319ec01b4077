// The first step of reading any record kept in the store: its bytes as one JSON object, or an
// error that names the record and says what it is instead.
import { InputError } from "../errors.js";
import { jsonErrorText } from "../util/text.js";

/** `bytes` as a JSON object; else an InputError with `code`, naming `source`. */
export function recordObject(
  bytes: Uint8Array,
  source: string,
  code: string,
): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    throw new InputError(code, `${source}: not JSON (${jsonErrorText(err)})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InputError(code, `${source}: not a JSON object`);
  }
  return value as Record<string, unknown>;
}
