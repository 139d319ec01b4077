// Whether a store honours conditional writes (If-None-Match: * and If-Match on PutObject), which
// race-safe release publishing rests on: probed with a throwaway object, remembered per store.

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import { OperationError } from "../errors.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { makeDirs } from "../util/make-dirs.js";
import { shownUrl } from "../util/url-credentials.js";
import type { ObjectStore, PutCondition } from "./object-store.js";

/**
 * Where probe objects go: inside the publishers' write and delete permissions (releases/*), and
 * under no channel, since channel names cannot start with ".".
 */
export const PROBE_PREFIX = "releases/.nixship-probe/";
export const CACHE_FILE = "conditional-writes.json";
/** How long a positive answer in the cache file is trusted. */
export const TRUST_MS = 24 * 60 * 60 * 1000;
const CACHE_MAX_BYTES = 1024 * 1024;
/** Entries kept in the cache file, newest first; far more than one machine publishes to. */
const CACHE_MAX_ENTRIES = 1000;
/** An etag no object has (S3 etags are quoted MD5s). */
const WRONG_ETAG = '"00000000000000000000000000000000"';

export interface ConditionalWritesOptions {
  /** Directory of the cache file (default: $NIXSHIP_CACHE_DIR, $XDG_CACHE_HOME/nixship, ~/.cache/nixship). */
  readonly cacheDir?: string;
  readonly now?: () => Date;
}

/** The probe of each store object, shared by concurrent callers; a failed probe is forgotten. */
const checked = new WeakMap<ObjectStore, Promise<void>>();

/**
 * Resolves when the store honours conditional writes; throws OperationError
 * `store-no-conditional-writes` when it ignores one. Probes once per store object, and once
 * a day per store URL across processes (positive answers only are remembered). A store error
 * during the probe propagates as is.
 */
export function ensureConditionalWrites(
  store: ObjectStore,
  options: ConditionalWritesOptions = {},
): Promise<void> {
  const known = checked.get(store);
  if (known !== undefined) return known;
  const check = checkStore(store, options);
  checked.set(store, check);
  check.catch(() => {
    if (checked.get(store) === check) checked.delete(store);
  });
  return check;
}

async function checkStore(store: ObjectStore, options: ConditionalWritesOptions): Promise<void> {
  const now = options.now ?? (() => new Date());
  const url = shownUrl(store.url);
  // A directory store is probed every time: the probe is local and costs less than the cache
  // file, which would otherwise collect every temporary directory a store was opened in.
  const cacheDir = url.startsWith("file:") ? undefined : (options.cacheDir ?? defaultCacheDir());
  if (cacheDir !== undefined && isTrusted((await readCache(cacheDir)).get(url), now())) return;
  await probe(store);
  if (cacheDir !== undefined) await remember(cacheDir, url, now());
}

type Ignored = "if-none-match" | "if-match" | "if-none-match-on-new";

async function probe(store: ObjectStore): Promise<void> {
  const key = `${PROBE_PREFIX}conditional-${randomBytes(6).toString("hex")}.json`;
  const body = Buffer.from('{"nixship":"probe of conditional writes; safe to delete"}\n');
  const put = async (condition: PutCondition) =>
    (await store.put(key, body, { contentType: "application/json", condition })).status;
  let passed = false;
  try {
    if ((await put({ ifAbsent: true })) !== "written") {
      throw refusal(store.url, ["if-none-match-on-new"]);
    }
    const ignored: Ignored[] = [];
    if ((await put({ ifAbsent: true })) === "written") ignored.push("if-none-match");
    if ((await put({ ifMatch: WRONG_ETAG })) === "written") ignored.push("if-match");
    if (ignored.length > 0) throw refusal(store.url, ignored);
    passed = true;
  } finally {
    if (passed) await store.delete(key);
    // The probe's own outcome (a refusal, a store error) is what to report; the delete is
    // tidying, and the object it may leave lies under no channel.
    else await store.delete(key).catch(() => undefined);
  }
}

const IGNORED: Readonly<Record<Ignored, string>> = {
  "if-none-match":
    "If-None-Match: * (write only if absent; a second write of the new probe object replaced it instead of failing)",
  "if-match":
    "If-Match (write only over a given version; a write naming a wrong etag replaced the probe object instead of failing)",
  "if-none-match-on-new":
    "If-None-Match: * (write only if absent; it refused to create a new probe object, as if one existed)",
};

function refusal(url: string, ignored: readonly Ignored[]): OperationError {
  const what = ignored.map((i) => IGNORED[i]).join(" and ");
  const onNew = ignored.includes("if-none-match-on-new");
  const consequence = onNew
    ? "on this store every publish would fail as if another publisher had won a race"
    : "on this store two publishers racing would both succeed and fork the release chain";
  return new OperationError(
    "store-no-conditional-writes",
    `store ${shownUrl(url)} ${onNew ? "does not honour" : "ignores"} ${what}. Releases are published with conditional writes (the release file only if its number is free, the channel only over the version read); ${consequence}, so nothing was published`,
    {
      hint: "AWS S3 supports both (conditional writes on PutObject); another S3-compatible server must honour If-None-Match: * and If-Match on PutObject; or use a directory store (file:///dir)",
    },
  );
}

/** The cache directory the environment names. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NIXSHIP_CACHE_DIR) return env.NIXSHIP_CACHE_DIR;
  // The XDG base directory spec ignores a relative XDG_CACHE_HOME.
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, "nixship");
  return join(homedir(), ".cache", "nixship");
}

function isTrusted(checkedAt: number | undefined, now: Date): boolean {
  if (checkedAt === undefined) return false;
  const age = now.getTime() - checkedAt;
  return age >= 0 && age < TRUST_MS;
}

/**
 * Store URL → time of the last positive answer. A cache that cannot be read, is not a regular
 * file of ours (owned by us, writable by no one else), is over 1 MiB or does not parse is
 * empty: the store is then probed, and a publish never fails for the cache's sake.
 */
async function readCache(dir: string): Promise<Map<string, number>> {
  const entries = new Map<string, number>();
  let text: string;
  try {
    const handle = await open(join(dir, CACHE_FILE), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await handle.stat();
      const uid = process.getuid?.();
      const foreign = (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0;
      if (!st.isFile() || foreign || st.size > CACHE_MAX_BYTES) return entries;
      const buffer = Buffer.alloc(CACHE_MAX_BYTES + 1);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      if (bytesRead > CACHE_MAX_BYTES) return entries;
      text = buffer.subarray(0, bytesRead).toString("utf8");
    } finally {
      await handle.close();
    }
  } catch {
    return entries; // absent or unreadable: probe instead
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return entries; // damaged: probe instead
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return entries;
  for (const [url, at] of Object.entries(doc)) {
    const time = typeof at === "string" ? Date.parse(at) : Number.NaN;
    if (!Number.isNaN(time)) entries.set(url, time);
  }
  return entries;
}

/** Records a positive answer, dropping expired entries; failures are ignored (see readCache). */
async function remember(dir: string, url: string, now: Date): Promise<void> {
  try {
    const entries = await readCache(dir);
    entries.set(url, now.getTime());
    const kept = [...entries]
      .filter(([, at]) => isTrusted(at, now))
      .sort(([, a], [, b]) => b - a)
      .slice(0, CACHE_MAX_ENTRIES)
      .map(([key, at]) => [key, new Date(at).toISOString()]);
    await makeDirs(dir, 0o700);
    const content = `${JSON.stringify(Object.fromEntries(kept), null, 2)}\n`;
    await writeFileAtomically(join(dir, CACHE_FILE), content, 0o600);
  } catch {
    // A read-only or full cache directory costs a probe next time, nothing more.
  }
}
