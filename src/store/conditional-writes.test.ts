// ensureConditionalWrites over a directory store and wrappers that ignore conditions, count
// requests or fail: the probe, the refusal, the in-process memo and the file cache of answers.
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OperationError } from "../errors.js";
import {
  CACHE_FILE,
  defaultCacheDir,
  ensureConditionalWrites,
  PROBE_PREFIX,
} from "./conditional-writes.js";
import { FsStore } from "./fs-store.js";
import { listAll } from "./helpers.js";
import type { ObjectStore, PutOptions, PutResult } from "./object-store.js";

const S3_URL = "s3://bucket/fleet?region=eu-west-1";
const T0 = new Date("2026-11-21T10:00:00.000Z");
const hours = (h: number) => new Date(T0.getTime() + h * 3600_000);

let dir: string;
let inner: FsStore;
let cacheDir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-conditional-"));
  inner = new FsStore(join(dir, "store"), { fsync: false });
  cacheDir = join(dir, "cache");
});
afterEach(async () => {
  // Whatever the outcome, the probe object is gone (and the directory store holds nothing).
  expect(await keys(inner)).toEqual([]);
  await rm(dir, { recursive: true, force: true });
});

async function keys(store: ObjectStore): Promise<string[]> {
  const found: string[] = [];
  for await (const info of listAll(store, "")) found.push(info.key);
  return found;
}

interface Call {
  readonly op: string;
  readonly key: string;
  readonly condition?: PutOptions["condition"];
}

/** `inner` behind another URL, with its calls recorded and some methods replaced. */
function wrap(
  overrides: Partial<ObjectStore> & { url?: string } = {},
): ObjectStore & { calls: Call[] } {
  const calls: Call[] = [];
  const put = overrides.put ?? inner.put.bind(inner);
  const del = overrides.delete ?? inner.delete.bind(inner);
  return {
    calls,
    url: overrides.url ?? inner.url,
    get: inner.get.bind(inner),
    head: inner.head.bind(inner),
    putFile: inner.putFile.bind(inner),
    makeStagingDir: inner.makeStagingDir.bind(inner),
    list: inner.list.bind(inner),
    close: inner.close.bind(inner),
    put: (key, body, options) => {
      calls.push({
        op: "put",
        key,
        ...(options?.condition ? { condition: options.condition } : {}),
      });
      return put(key, body, options);
    },
    delete: (key) => {
      calls.push({ op: "delete", key });
      return del(key);
    },
  };
}

/** A put that drops the conditions `ignore` accepts and writes anyway, as plain s3rver does. */
function ignoring(ignore: (options: PutOptions) => boolean) {
  return async (key: string, body: unknown, options: PutOptions = {}): Promise<PutResult> => {
    const { condition, ...rest } = options;
    return inner.put(key, body as Uint8Array, ignore(options) ? rest : options);
  };
}

const cacheFile = () => join(cacheDir, CACHE_FILE);
const readCache = async () => JSON.parse(await readFile(cacheFile(), "utf8")) as unknown;

describe("the probe", () => {
  it("passes on a directory store: two refused conditional writes, then the probe is deleted", async () => {
    const store = wrap();
    await ensureConditionalWrites(store, { cacheDir });
    const [first, ...rest] = store.calls;
    expect(first?.key).toMatch(/^releases\/\.nixship-probe\/conditional-[0-9a-f]{12}\.json$/);
    expect(store.calls).toEqual([
      { op: "put", key: first?.key, condition: { ifAbsent: true } },
      { op: "put", key: first?.key, condition: { ifAbsent: true } },
      { op: "put", key: first?.key, condition: { ifMatch: '"00000000000000000000000000000000"' } },
      { op: "delete", key: first?.key },
    ]);
    expect(rest).toHaveLength(3);
    // The probe lies outside every channel's releases/<channel>/ (channel names start [a-z0-9]).
    expect(first?.key.startsWith(PROBE_PREFIX)).toBe(true);
    // A directory store's answer is not written to the cache file.
    await expect(stat(cacheFile())).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("refuses a store that ignores every condition, naming the store and both conditions", async () => {
    const store = wrap({ url: S3_URL, put: ignoring(() => true) });
    const refused = await ensureConditionalWrites(store, { cacheDir }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(OperationError);
    expect(refused).toMatchObject({
      code: "store-no-conditional-writes",
      exitCode: 1,
      message: expect.stringContaining(`store ${S3_URL} ignores If-None-Match: *`),
      hint: expect.stringContaining("AWS S3 supports both"),
    });
    const { message, hint } = refused as OperationError;
    expect(message).toContain("and If-Match");
    expect(message).toContain(
      "two publishers racing would both succeed and fork the release chain",
    );
    expect(hint).toContain("If-None-Match: * and If-Match on PutObject");
    expect(hint).toContain("file:///");
    expect(store.calls.at(-1)).toMatchObject({ op: "delete", key: store.calls[0]?.key });
    // Negative answers are never cached.
    await expect(stat(cacheFile())).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("names If-Match alone when only that condition is ignored", async () => {
    const store = wrap({
      url: S3_URL,
      put: ignoring((o) => o.condition !== undefined && "ifMatch" in o.condition),
    });
    const refused = await ensureConditionalWrites(store, { cacheDir }).catch((err: unknown) => err);
    expect(refused).toMatchObject({ code: "store-no-conditional-writes" });
    const { message } = refused as OperationError;
    expect(message).toContain(`store ${S3_URL} ignores If-Match (write only over a given version`);
    expect(message).not.toContain("If-None-Match");
  });

  it("names If-None-Match alone when only that condition is ignored", async () => {
    const store = wrap({
      url: S3_URL,
      put: ignoring((o) => o.condition !== undefined && "ifAbsent" in o.condition),
    });
    await expect(ensureConditionalWrites(store, { cacheDir })).rejects.toThrow(
      expect.objectContaining({
        code: "store-no-conditional-writes",
        message: expect.stringMatching(
          /ignores If-None-Match: \* \(write only if absent; a second write/,
        ),
      }),
    );
  });

  it("refuses a store that will not create a new object under If-None-Match", async () => {
    const store = wrap({ url: S3_URL, put: async () => ({ status: "precondition-failed" }) });
    await expect(ensureConditionalWrites(store, { cacheDir })).rejects.toThrow(
      expect.objectContaining({
        code: "store-no-conditional-writes",
        message: expect.stringContaining("every publish would fail"),
      }),
    );
    expect(store.calls.map((c) => c.op)).toEqual(["put", "delete"]);
  });

  it("lets a store error through as is, and still deletes the probe", async () => {
    const fault = new OperationError("store-s3-failed", "S3 put failed: ECONNRESET");
    let puts = 0;
    const store = wrap({
      url: S3_URL,
      put: (key, body, options) =>
        ++puts === 2 ? Promise.reject(fault) : inner.put(key, body, options),
    });
    await expect(ensureConditionalWrites(store, { cacheDir })).rejects.toBe(fault);
    expect(store.calls.map((c) => c.op)).toEqual(["put", "put", "delete"]);
  });

  it("reports the refusal, not a failed delete of the probe", async () => {
    const store = wrap({
      url: S3_URL,
      put: ignoring(() => true),
      delete: async (key) => {
        await inner.delete(key);
        throw new OperationError("store-s3-failed", "S3 delete failed: AccessDenied");
      },
    });
    await expect(ensureConditionalWrites(store, { cacheDir })).rejects.toMatchObject({
      code: "store-no-conditional-writes",
    });
  });

  it("reports a failed delete after a probe that passed, and does not cache that answer", async () => {
    const denied = new OperationError("store-s3-failed", "S3 delete failed: AccessDenied");
    const store = wrap({
      url: S3_URL,
      delete: async (key) => {
        await inner.delete(key);
        throw denied;
      },
    });
    await expect(ensureConditionalWrites(store, { cacheDir })).rejects.toBe(denied);
    await expect(stat(cacheFile())).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("the in-process memo", () => {
  it("probes a store object once, however often and however concurrently it is asked", async () => {
    const store = wrap();
    await Promise.all([ensureConditionalWrites(store), ensureConditionalWrites(store)]);
    expect(store.calls).toHaveLength(4);
    await ensureConditionalWrites(store);
    expect(store.calls).toHaveLength(4);
  });

  it("forgets a failed probe, so the next call probes again", async () => {
    let fail = true;
    const store = wrap({
      put: (key, body, options) =>
        fail ? Promise.reject(new Error("network down")) : inner.put(key, body, options),
    });
    await expect(ensureConditionalWrites(store)).rejects.toThrow("network down");
    fail = false;
    const before = store.calls.length;
    await ensureConditionalWrites(store);
    expect(store.calls.length - before).toBe(4);
  });
});

describe("the cache file", () => {
  it("remembers a positive answer for 24 hours, per store URL, for new store objects", async () => {
    await ensureConditionalWrites(wrap({ url: S3_URL }), { cacheDir, now: () => T0 });
    expect(await readCache()).toEqual({ [S3_URL]: T0.toISOString() });
    expect((await stat(cacheFile())).mode & 0o777).toBe(0o600);
    expect((await stat(cacheDir)).mode & 0o777).toBe(0o700);

    const later = wrap({ url: S3_URL });
    await ensureConditionalWrites(later, { cacheDir, now: () => hours(23.9) });
    expect(later.calls).toEqual([]);

    const other = wrap({ url: "s3://bucket/other?region=eu-west-1" });
    await ensureConditionalWrites(other, { cacheDir, now: () => hours(1) });
    expect(other.calls).toHaveLength(4);

    const nextDay = wrap({ url: S3_URL });
    await ensureConditionalWrites(nextDay, { cacheDir, now: () => hours(24) });
    expect(nextDay.calls).toHaveLength(4);
    // Refreshed; the other store's entry (an hour old) stays.
    expect(await readCache()).toEqual({
      [S3_URL]: hours(24).toISOString(),
      "s3://bucket/other?region=eu-west-1": hours(1).toISOString(),
    });
  });

  it("drops expired entries when it writes, and trusts no time in the future", async () => {
    await mkdir(cacheDir, { recursive: true });
    const future = {
      [S3_URL]: hours(1).toISOString(),
      "s3://old/x?region=a": hours(-30).toISOString(),
    };
    await writeFile(cacheFile(), JSON.stringify(future), { mode: 0o600 });
    const store = wrap({ url: S3_URL });
    await ensureConditionalWrites(store, { cacheDir, now: () => T0 });
    expect(store.calls).toHaveLength(4);
    expect(await readCache()).toEqual({ [S3_URL]: T0.toISOString() });
  });

  it("never stores credentials: userinfo in a store URL is stripped", async () => {
    const secretUrl = "s3://AKIAEXAMPLE:topsecret@bucket/fleet?region=eu-west-1";
    await ensureConditionalWrites(wrap({ url: secretUrl }), { cacheDir, now: () => T0 });
    const text = await readFile(cacheFile(), "utf8");
    expect(text).not.toContain("topsecret");
    expect(await readCache()).toEqual({ "s3://bucket/fleet?region=eu-west-1": T0.toISOString() });
    const refused = wrap({ url: secretUrl, put: ignoring(() => true) });
    const err = await ensureConditionalWrites(refused, { cacheDir }).catch((e: unknown) => e);
    expect((err as Error).message).not.toContain("topsecret");
  });

  it.each([
    ["does not parse", () => "{ not json"],
    ["is not an object", () => JSON.stringify([S3_URL])],
    [
      "is over 1 MiB",
      () => JSON.stringify({ [S3_URL]: T0.toISOString(), pad: "x".repeat(1024 * 1024) }),
    ],
  ])("is ignored when it %s: the store is probed and the file replaced", async (_, content) => {
    await mkdir(cacheDir, { recursive: true, mode: 0o700 });
    await writeFile(cacheFile(), content(), { mode: 0o600 });
    const store = wrap({ url: S3_URL });
    await ensureConditionalWrites(store, { cacheDir, now: () => hours(1) });
    expect(store.calls).toHaveLength(4);
    expect(await readCache()).toEqual({ [S3_URL]: hours(1).toISOString() });
  });

  it("is ignored when others may write it", async () => {
    await mkdir(cacheDir, { recursive: true, mode: 0o700 });
    await writeFile(cacheFile(), JSON.stringify({ [S3_URL]: T0.toISOString() }), { mode: 0o600 });
    await chmod(cacheFile(), 0o666);
    const store = wrap({ url: S3_URL });
    await ensureConditionalWrites(store, { cacheDir, now: () => hours(1) });
    expect(store.calls).toHaveLength(4);
    expect((await stat(cacheFile())).mode & 0o777).toBe(0o600);
  });

  it("never fails the check when it cannot be written", async () => {
    await writeFile(join(dir, "a-file"), "");
    const store = wrap({ url: S3_URL });
    await ensureConditionalWrites(store, { cacheDir: join(dir, "a-file", "cache"), now: () => T0 });
    expect(store.calls).toHaveLength(4);
  });
});

describe("defaultCacheDir", () => {
  it("is $NIXSHIP_CACHE_DIR, else $XDG_CACHE_HOME/nixship, else ~/.cache/nixship", () => {
    expect(defaultCacheDir({ NIXSHIP_CACHE_DIR: "/c", XDG_CACHE_HOME: "/x" })).toBe("/c");
    expect(defaultCacheDir({ XDG_CACHE_HOME: "/x" })).toBe("/x/nixship");
    // The XDG spec ignores a relative path.
    expect(defaultCacheDir({ XDG_CACHE_HOME: "rel" })).toMatch(/\/\.cache\/nixship$/);
    expect(defaultCacheDir({})).toMatch(/\/\.cache\/nixship$/);
  });
});
