// Pins: store paths kept by name, whatever the fleet runs (`gc/pins/<name>.json`). A garbage
// collection keeps every pinned path's closure. A pin can only keep objects, never remove one,
// so one planted by someone who can write the bucket costs storage and nothing else.
import { InputError } from "../errors.js";
import { isStorePath, type StorePath } from "../nix/store-path.js";
import { listAll, readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";

const PIN_PREFIX = "gc/pins/";
export const PIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Far above a pin of a few thousand paths. */
const PIN_LIMIT = 1024 * 1024;
/** Paths one pin may name. */
export const PIN_MAX_PATHS = 10_000;

export interface Pin {
  readonly name: string;
  readonly paths: readonly StorePath[];
  readonly created: string;
}

export function pinKey(name: string): string {
  if (!PIN_NAME.test(name)) {
    throw new InputError(
      "bad-pin-name",
      `pin name ${JSON.stringify(name.slice(0, 80))} must match ${PIN_NAME.source}`,
      { hint: "a pin's name is letters, digits, '_', '.' and '-', at most 64 characters" },
    );
  }
  return `${PIN_PREFIX}${name}.json`;
}

export async function writePin(store: ObjectStore, pin: Pin): Promise<void> {
  const body = { version: 1, name: pin.name, paths: pin.paths, created: pin.created };
  await store.put(pinKey(pin.name), Buffer.from(`${JSON.stringify(body, null, 2)}\n`), {
    contentType: "application/json",
  });
}

/** Removes the pin; false when there was none of that name. */
export async function removePin(store: ObjectStore, name: string): Promise<boolean> {
  const key = pinKey(name);
  if ((await store.head(key)) === undefined) return false;
  await store.delete(key);
  return true;
}

export interface PinReads {
  readonly pins: Pin[];
  /** Pins that could not be read, by key, and why. */
  readonly unreadable: Map<string, string>;
}

/** Every pin (a LIST, then one small GET per pin). */
export async function readPins(store: ObjectStore): Promise<PinReads> {
  const keys: string[] = [];
  for await (const o of listAll(store, PIN_PREFIX)) if (o.key.endsWith(".json")) keys.push(o.key);
  const unreadable = new Map<string, string>();
  const reads = await mapLimit(keys, 8, async (key) => {
    try {
      const bytes = await readAll(store, key, PIN_LIMIT);
      return bytes === undefined ? undefined : parsePin(bytes, key);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      unreadable.set(key, err.message);
      return undefined;
    }
  });
  return { pins: reads.filter((p) => p !== undefined), unreadable };
}

export function parsePin(bytes: Uint8Array, key: string): Pin {
  const bad = (why: string) => new InputError("pin-malformed", `${key}: ${why}`);
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw bad("is not JSON");
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad("is not an object");
  const { version, name, paths, created } = o as Record<string, unknown>;
  if (version !== 1) throw bad("version is not 1");
  if (typeof name !== "string" || !PIN_NAME.test(name) || pinKey(name) !== key) {
    throw bad("name does not match its key");
  }
  if (!Array.isArray(paths) || paths.length > PIN_MAX_PATHS) {
    throw bad(`paths is not a list of at most ${PIN_MAX_PATHS} store paths`);
  }
  for (const [i, p] of paths.entries()) {
    if (typeof p !== "string" || !isStorePath(p)) throw bad(`paths[${i}] is not a store path`);
  }
  if (typeof created !== "string" || Number.isNaN(Date.parse(created))) {
    throw bad("created is not a time");
  }
  return { name, paths: paths as StorePath[], created };
}
