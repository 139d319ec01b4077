// The push commit point: a narinfo is written only after its NAR and after the narinfos of
// its references, so a push that fails midway leaves only complete closures in the cache.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
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
import { runOk } from "./support/cli.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";

type Event =
  | { readonly type: "put"; readonly key: string; readonly deferred: boolean }
  | { readonly type: "flush-start" | "flush-end"; readonly flush: number };

/**
 * A real FsStore that records the order of puts and flushes, and can be told to fail one of
 * the puts.
 */
function recording(inner: FsStore, failWhen?: (key: string) => boolean) {
  const puts: string[] = [];
  const events: Event[] = [];
  let flushes = 0;
  const record = (key: string, options: PutOptions | undefined) => {
    puts.push(key);
    events.push({ type: "put", key, deferred: options?.durability === "deferred" });
  };
  const store: ObjectStore = {
    url: inner.url,
    get: (k) => inner.get(k),
    head: (k) => inner.head(k),
    list: (p, o) => inner.list(p, o),
    delete: (k) => inner.delete(k),
    close: () => inner.close(),
    makeStagingDir: () => inner.makeStagingDir(),
    async putFile(key: string, file: string, options?: PutOptions) {
      if (failWhen?.(key)) {
        await rm(file, { force: true });
        throw new Error(`injected failure writing ${key}`);
      }
      const result = await inner.putFile(key, file, options);
      record(key, options);
      return result;
    },
    async put(key: string, body: Parameters<ObjectStore["put"]>[1], options?: PutOptions) {
      if (failWhen?.(key)) throw new Error(`injected failure writing ${key}`);
      const result = await inner.put(key, body, options);
      record(key, options);
      return result;
    },
    async flush() {
      const flush = flushes++;
      events.push({ type: "flush-start", flush });
      await inner.flush();
      events.push({ type: "flush-end", flush });
    },
  };
  return { store, puts, events };
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
  it("writes each narinfo after its NAR and after its references' narinfos", async () => {
    const { store, puts } = recording(new FsStore(join(work, "ordered")));
    const closure = await queryClosure([root]);
    await pushClosure({
      createCache: true,
      store,
      roots: [root],
      key: generateSecretKey("k"),
      compression: "zstd",
      jobs: 4,
    });
    for (const info of closure) {
      const key = `${info.path.slice(11, 43)}.narinfo`;
      const at = puts.indexOf(key);
      expect(at).toBeGreaterThan(-1);
      const narinfo = parseNarInfo((await readAll(store, key))?.toString() ?? "");
      expect(puts.indexOf(narinfo.url)).toBeLessThan(at);
      for (const ref of info.references.filter((r) => r !== info.path)) {
        expect(puts.indexOf(`${ref.slice(11, 43)}.narinfo`)).toBeLessThan(at);
      }
    }
  });

  for (const compression of ["zstd", "none", "xz"] as const) {
    it(`stores NARs deferred and flushes them before any narinfo names them (${compression})`, async () => {
      const { store, events } = recording(new FsStore(join(work, `flushed-${compression}`)));
      const closure = await queryClosure([root]);
      await pushClosure({
        createCache: true,
        store,
        roots: [root],
        key: generateSecretKey("k"),
        compression,
        jobs: 2,
      });
      const at = (pred: (e: Event) => boolean) => events.findIndex(pred);
      for (const info of closure) {
        const key = `${info.path.slice(11, 43)}.narinfo`;
        const narinfo = parseNarInfo((await readAll(store, key))?.toString() ?? "");
        const narAt = at((e) => e.type === "put" && e.key === narinfo.url);
        const infoAt = at((e) => e.type === "put" && e.key === key);
        expect(events[narAt]).toMatchObject({ deferred: true });
        // The narinfo, the commit, is published by a later flush, in put order.
        expect(events[infoAt]).toMatchObject({ deferred: true });
        // Some flush began after the NAR was stored and ended before the narinfo.
        const covering = events.filter(
          (e, i) =>
            e.type === "flush-end" &&
            i < infoAt &&
            at((s) => s.type === "flush-start" && s.flush === e.flush) > narAt,
        );
        expect(covering.length, info.path).toBeGreaterThan(0);
      }
      // A flush began after the last narinfo was put: every narinfo is published.
      const lastPut = events.findLastIndex((e) => e.type === "put");
      expect(events.findLastIndex((e) => e.type === "flush-start")).toBeGreaterThan(lastPut);
      // Group commit: this small closure's NARs are one batch, then the narinfos' flush.
      const flushes = events.filter((e) => e.type === "flush-end").length;
      expect(flushes).toBe(2);
    });
  }

  it("leaves no narinfo whose closure is incomplete when an upload fails", async () => {
    const closure = await queryClosure([root]);
    const lib = closure.find((p) => p.path.endsWith("-nixship-fixture-lib"));
    expect(lib).toBeDefined();
    const inner = new FsStore(join(work, "failing"));
    // Fail the upload of the library's NAR; uncompressed, its key is nar/<NarHash>.nar.
    const libNar = `nar/${lib?.narHash.nix32}.nar`;
    const { store } = recording(inner, (key) => key === libNar);
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
