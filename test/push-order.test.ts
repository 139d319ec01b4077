// The push commit point: a narinfo is written only after its NAR and after the narinfos of
// its references, so a push that fails midway leaves only complete closures in the cache.
import { chmod, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queryClosure } from "../src/cache/local-nix.js";
import { pushClosure } from "../src/cache/push.js";
import { generateSecretKey } from "../src/nix/keys.js";
import { parseNarInfo } from "../src/nix/narinfo.js";
import type { StorePath } from "../src/nix/store-path.js";
import { FsStore } from "../src/store/fs-store.js";
import { readAll } from "../src/store/helpers.js";
import type { ObjectStore, PutOptions } from "../src/store/object-store.js";
import { runOk } from "../support/cli.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";

type Event =
  | {
      readonly type: "put-called" | "put-done";
      readonly key: string;
      readonly deferred: boolean;
    }
  | { readonly type: "flush-start" | "flush-end"; readonly flush: number };

/**
 * A real FsStore that records when each put is called and done and each flush starts and
 * ends, and can be told to fail one of the puts. Without `flush`, it passes for a store that
 * publishes each put as it completes (S3).
 */
function recording(
  inner: FsStore,
  options: { failWhen?: (key: string) => boolean; flush?: boolean } = {},
) {
  const events: Event[] = [];
  let flushes = 0;
  const record = (type: "put-called" | "put-done", key: string, o: PutOptions | undefined) =>
    events.push({ type, key, deferred: o?.durability === "deferred" });
  const store: ObjectStore = {
    url: inner.url,
    get: (k) => inner.get(k),
    head: (k) => inner.head(k),
    list: (p, o) => inner.list(p, o),
    delete: (k) => inner.delete(k),
    close: () => inner.close(),
    makeStagingDir: () => inner.makeStagingDir(),
    async putFile(key: string, file: string, o?: PutOptions) {
      record("put-called", key, o);
      if (options.failWhen?.(key)) {
        await rm(file, { force: true });
        throw new Error(`injected failure writing ${key}`);
      }
      const result = await inner.putFile(key, file, options.flush === false ? {} : o);
      record("put-done", key, o);
      return result;
    },
    async put(key: string, body: Parameters<ObjectStore["put"]>[1], o?: PutOptions) {
      record("put-called", key, o);
      if (options.failWhen?.(key)) throw new Error(`injected failure writing ${key}`);
      const result = await inner.put(key, body, options.flush === false ? {} : o);
      record("put-done", key, o);
      return result;
    },
    ...(options.flush === false
      ? {}
      : {
          async flush() {
            const flush = flushes++;
            events.push({ type: "flush-start", flush });
            await inner.flush();
            events.push({ type: "flush-end", flush });
          },
        }),
  };
  const at = (type: Event["type"], key: string) =>
    events.findIndex((e) => e.type === type && "key" in e && e.key === key);
  return { store, events, at };
}

let work: string;
let root: StorePath;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-push-order-"));
  root = (await buildFixtureClosure()) as StorePath;
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("push commit order", () => {
  for (const flush of [true, false]) {
    it(`puts each narinfo after its NAR and after its references' narinfos (${flush ? "a store that orders deferred puts" : "a store without flush"})`, async () => {
      const { store, at } = recording(new FsStore(join(work, `ordered-${flush}`)), { flush });
      const closure = await queryClosure([root]);
      await pushClosure({
        createCache: true,
        store,
        roots: [root],
        key: generateSecretKey("k"),
        compression: "zstd",
        jobs: 4,
        // On worker threads, as a large push is (the other pushes here are inline).
        inlineNarBytes: 0,
      });
      // A store that publishes deferred puts in call order needs only the calls in order;
      // one without flush publishes each put as it completes, so a put must follow the
      // completion of what it depends on.
      const before = flush ? "put-called" : "put-done";
      for (const info of closure) {
        const key = `${info.path.slice(11, 43)}.narinfo`;
        const called = at("put-called", key);
        expect(called).toBeGreaterThan(-1);
        const narinfo = parseNarInfo((await readAll(store, key))?.toString() ?? "");
        expect(at("put-done", narinfo.url)).toBeGreaterThan(-1);
        expect(at("put-done", narinfo.url)).toBeLessThan(called);
        for (const ref of info.references.filter((r) => r !== info.path)) {
          const refAt = at(before, `${ref.slice(11, 43)}.narinfo`);
          expect(refAt, ref).toBeGreaterThan(-1);
          expect(refAt, ref).toBeLessThan(called);
        }
      }
    });
  }

  for (const compression of ["zstd", "none", "xz"] as const) {
    it(`puts NARs and narinfos deferred and publishes them in a few flushes, the last at the end (${compression})`, async () => {
      const { store, events } = recording(new FsStore(join(work, `flushed-${compression}`)));
      await pushClosure({
        createCache: true,
        store,
        roots: [root],
        key: generateSecretKey("k"),
        compression,
        jobs: 2,
      });
      const puts = events.filter((e) => e.type === "put-called");
      const stored = puts.filter((e) => "key" in e && e.key !== "nix-cache-info");
      expect(stored.length).toBeGreaterThan(0);
      for (const put of stored) expect(put).toMatchObject({ deferred: true });
      // Group commit: a few flushes for the whole closure, the last after the last put.
      const flushes = events.filter((e) => e.type === "flush-start");
      expect(flushes.length).toBeGreaterThanOrEqual(1);
      expect(flushes.length).toBeLessThan(stored.length / 2);
      expect(events.findLastIndex((e) => e.type === "flush-start")).toBeGreaterThan(
        events.findLastIndex((e) => e.type === "put-done"),
      );
    });
  }

  it("leaves no narinfo whose closure is incomplete when an upload fails", async () => {
    const closure = await queryClosure([root]);
    const lib = closure.find((p) => p.path.endsWith("-nixship-fixture-lib"));
    expect(lib).toBeDefined();
    const inner = new FsStore(join(work, "failing"));
    // Fail the upload of the library's NAR; uncompressed, its key is nar/<NarHash>.nar.
    const libNar = `nar/${lib?.narHash.nix32}.nar`;
    const { store } = recording(inner, { failWhen: (key) => key === libNar });
    await expect(
      pushClosure({
        createCache: true,
        store,
        roots: [root],
        key: generateSecretKey("k"),
        compression: "none",
        jobs: 1,
      }),
    ).rejects.toThrow(/injected failure/);
    for (const info of closure) {
      const present = (await inner.head(`${info.path.slice(11, 43)}.narinfo`)) !== undefined;
      const dependsOnLib =
        info.path !== lib?.path &&
        (await queryClosure([info.path])).some((p) => p.path === lib?.path);
      if (info.path === lib?.path || dependsOnLib) expect(present, info.path).toBe(false);
    }
  });
});

describe("an interrupted push", () => {
  for (const jobs of [1, 2]) {
    it(`finishes the paths in progress, keeps only whole closures and leaves nothing behind (jobs ${jobs})`, async () => {
      const closure = await queryClosure([root]);
      const cache = join(work, `interrupted-${jobs}`);
      const store = new FsStore(cache);
      const interrupt = new AbortController();
      await expect(
        pushClosure({
          createCache: true,
          store,
          roots: [root],
          key: generateSecretKey("k"),
          compression: "zstd",
          jobs,
          inlineNarBytes: 0,
          signal: interrupt.signal,
          // Interrupted as soon as the first NAR is being written: the paths not started by
          // then never are.
          onEvent: (e) => {
            if (e.type === "bytes") interrupt.abort("interrupted (SIGINT)");
          },
        }),
      ).rejects.toMatchObject({
        exitCode: 130,
        message: expect.stringContaining("push: interrupted (SIGINT)"),
      });
      await store.close();
      const published = new Set(
        (await store.list("")).objects.map((o) => o.key).filter((k) => k.endsWith(".narinfo")),
      );
      expect(published.size).toBeLessThan(closure.length);
      for (const info of closure) {
        if (!published.has(`${info.path.slice(11, 43)}.narinfo`)) continue;
        for (const ref of info.references) {
          expect(published.has(`${ref.slice(11, 43)}.narinfo`), `${info.path} -> ${ref}`).toBe(
            true,
          );
        }
      }
      // No temp file, no staging directory: only the cache's own objects.
      const names = await readdir(cache, { recursive: true });
      expect(names.filter((n) => n.includes("nixship-tmp"))).toEqual([]);
    });
  }
});

describe("push refuses a path whose files no longer match Nix's record", () => {
  for (const compression of ["none", "zstd", "xz"] as const) {
    it(`stores nothing for it (${compression})`, async () => {
      // A separate Nix store whose files we may corrupt, unlike the real /nix/store.
      const chroot = join(work, `chroot-${compression}`);
      await runOk("nix", ["copy", "--no-check-sigs", "--to", chroot, root]);
      const closure = await queryClosure([root], { store: chroot });
      const lib = closure.find((p) => p.path.endsWith("-nixship-fixture-lib"));
      const data = join(chroot, lib?.path ?? "", "lib/data.txt");
      await chmod(data, 0o644);
      await writeFile(data, "library v2\n");
      const cache = join(work, `mismatch-${compression}`);
      const store = new FsStore(cache);
      await expect(
        pushClosure({
          createCache: true,
          store,
          roots: [root],
          key: generateSecretKey("k"),
          compression,
          jobs: 2,
          nix: { store: chroot },
        }),
      ).rejects.toThrow(
        /nixship-fixture-lib: the NAR read from disk .* differs from what Nix recorded/,
      );
      const keys = (await store.list("")).objects.map((o) => o.key);
      expect(keys).not.toContain(`${lib?.path.slice(11, 43)}.narinfo`);
      if (compression === "none") expect(keys).not.toContain(`nar/${lib?.narHash.nix32}.nar`);
      expect(keys.filter((k) => k.includes("tmp"))).toEqual([]);
    });
  }
});
