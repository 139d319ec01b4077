// One contract suite for every ObjectStore adapter (FsStore on a temp dir, S3Store on s3rver and
// on moto's server), plus the few checks that only make sense for one of them.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { InputError, OperationError } from "../src/errors.js";
import { FsStore } from "../src/store/fs-store.js";
import { deleteKeys, listAll, readAll } from "../src/store/helpers.js";
import type { ObjectStore, PutResult } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import type { S3Bucket } from "../support/s3-server.js";
import { S3_SERVERS } from "./support/s3-servers.js";

interface Opened {
  readonly store: ObjectStore;
  readonly cleanup: () => Promise<void>;
}

const MiB = 1024 * 1024;

async function text(store: ObjectStore, key: string): Promise<string | undefined> {
  return (await readAll(store, key))?.toString("utf8");
}

async function keys(store: ObjectStore, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const info of listAll(store, prefix)) found.push(info.key);
  return found;
}

/** A stream that yields `good` bytes and then fails, as a broken upload source would. */
function failingStream(good: number): Readable {
  return Readable.from(
    (async function* () {
      yield Buffer.alloc(good, 1);
      await new Promise((resolve) => setTimeout(resolve, 10));
      throw new Error("source broke");
    })(),
  );
}

/** Of racing puts, the one that wrote (its index); every other one was refused, not failed. */
function oneWinner(results: readonly PutResult[]): number {
  const winners = results.flatMap((r, i) => (r.status === "written" ? [i] : []));
  expect(winners).toHaveLength(1);
  const refused = results.filter((r) => r.status !== "written");
  expect(refused).toEqual(Array(results.length - 1).fill({ status: "precondition-failed" }));
  return winners[0] ?? -1;
}

function describeObjectStoreContract(name: string, open: () => Promise<Opened>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let store: ObjectStore;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      ({ store, cleanup } = await open());
    });
    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    it("round-trips text, with matching put, head and get info", async () => {
      const before = Date.now();
      const put = await store.put("greeting.txt", Buffer.from("hello"), {
        contentType: "text/plain",
      });
      expect(put.status).toBe("written");
      const etag = put.status === "written" ? put.etag : "";
      expect(etag).not.toBe("");
      const head = await store.head("greeting.txt");
      expect(head).toMatchObject({ key: "greeting.txt", size: 5, etag });
      // s3rver keeps whole seconds; allow for that and for clock skew.
      expect(Math.abs((head?.lastModified.getTime() ?? 0) - before)).toBeLessThan(60_000);
      const got = await store.get("greeting.txt");
      expect(got?.info).toEqual(head);
      got?.body.destroy();
      expect(await text(store, "greeting.txt")).toBe("hello");
    });

    it("round-trips binary and empty objects, and known-size streams", async () => {
      const bytes = Buffer.concat([Buffer.from([...Array(256).keys()]), randomBytes(100_000)]);
      await store.put("bin/data", new Uint8Array(bytes));
      expect((await readAll(store, "bin/data"))?.equals(bytes)).toBe(true);
      await store.put("bin/empty", new Uint8Array(0));
      expect(await store.head("bin/empty")).toMatchObject({ size: 0 });
      expect((await readAll(store, "bin/empty"))?.length).toBe(0);
      await store.put("bin/stream", Readable.from([bytes.subarray(0, 10), bytes.subarray(10)]), {
        size: bytes.length,
      });
      expect((await readAll(store, "bin/stream"))?.equals(bytes)).toBe(true);
    });

    it("streams a 40 MiB object of unknown size in and out", async () => {
      const hashIn = createHash("sha256");
      const source = Readable.from(
        (function* () {
          for (let i = 0; i < 40; i++) {
            const chunk = randomBytes(MiB);
            hashIn.update(chunk);
            yield chunk;
          }
        })(),
      );
      const put = await store.put("big/object", source);
      expect(put.status).toBe("written");
      expect(await store.head("big/object")).toMatchObject({ size: 40 * MiB });
      const got = await store.get("big/object");
      const hashOut = createHash("sha256");
      let size = 0;
      for await (const chunk of got?.body ?? []) {
        hashOut.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      expect(size).toBe(40 * MiB);
      expect(hashOut.digest("hex")).toBe(hashIn.digest("hex"));
    });

    it("reports absent objects as undefined, including directory-like prefixes", async () => {
      expect(await store.get("nope")).toBeUndefined();
      expect(await store.head("nope")).toBeUndefined();
      await store.put("dir/inside", Buffer.from("x"));
      expect(await store.get("dir")).toBeUndefined();
      expect(await store.head("dir")).toBeUndefined();
      expect(await store.head("dir/inside/deeper")).toBeUndefined();
    });

    it("answers a conditional get with not-modified while the object keeps the etag", async () => {
      const v1 = await store.put("cond/k", Buffer.from("one"));
      if (v1.status !== "written") throw new Error("setup failed");
      expect(await store.get("cond/k", { ifNoneMatch: v1.etag })).toEqual({
        status: "not-modified",
      });
      // Another etag, or no condition at all: the object comes back with its body.
      for (const options of [{ ifNoneMatch: '"some-other-etag"' }, {}]) {
        const got = await store.get("cond/k", options);
        if (got?.status !== "found") throw new Error(`expected the object, got ${got?.status}`);
        expect(got.info).toMatchObject({ key: "cond/k", size: 3, etag: v1.etag });
        got.body.destroy();
      }
      // Once replaced, the old etag no longer matches: the new content is sent.
      const v2 = await store.put("cond/k", Buffer.from("two!"));
      if (v2.status !== "written") throw new Error("setup failed");
      const changed = await store.get("cond/k", { ifNoneMatch: v1.etag });
      if (changed?.status !== "found")
        throw new Error(`expected the object, got ${changed?.status}`);
      expect(changed.info.etag).toBe(v2.etag);
      const chunks: Buffer[] = [];
      for await (const chunk of changed.body) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe("two!");
      expect(await store.get("cond/k", { ifNoneMatch: v2.etag })).toEqual({
        status: "not-modified",
      });
      // An absent object is absent, whatever the condition.
      expect(await store.get("cond/absent", { ifNoneMatch: v1.etag })).toBeUndefined();
    });

    it("gives a replaced object a new etag", async () => {
      const first = await store.put("k", Buffer.from("one"));
      const second = await store.put("k", Buffer.from("two!"));
      expect(first.status === "written" && second.status === "written").toBe(true);
      if (first.status !== "written" || second.status !== "written") return;
      expect(second.etag).not.toBe(first.etag);
      expect((await store.head("k"))?.etag).toBe(second.etag);
      expect(await text(store, "k")).toBe("two!");
    });

    it("lists a prefix in byte order, in pages", async () => {
      const names = [
        ...Array.from({ length: 22 }, (_, i) => `k${String(i).padStart(2, "0")}`),
        "Zed",
        "é",
        "😀",
      ].map((n) => `list/${n}`);
      await Promise.all([...names, "lis", "other/x"].map((k) => store.put(k, Buffer.from(k))));
      const expected = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      expect(expected[0]).toBe("list/Zed");
      expect(expected.slice(-2)).toEqual(["list/é", "list/😀"]);

      const pages: string[][] = [];
      let token: string | undefined;
      do {
        const page = await store.list("list/", { limit: 10, ...(token ? { token } : {}) });
        pages.push(page.objects.map((o) => o.key));
        token = page.nextToken;
      } while (token !== undefined);
      expect(pages.map((p) => p.length)).toEqual([10, 10, 5]);
      expect(pages.flat()).toEqual(expected);

      const exact = await store.list("list/k1", { limit: 10 });
      expect(exact.objects.map((o) => o.key)).toEqual(
        expected.filter((k) => k.startsWith("list/k1")),
      );
      expect(exact.nextToken).toBeUndefined();

      const [first] = (await store.list("list/é")).objects;
      expect(first).toEqual(await store.head("list/é"));
      expect(await keys(store)).toEqual(["lis", ...expected, "other/x"]);
    });

    it("lists after a key with startAfter, whether or not the key exists, stepping over a folder", async () => {
      const names = ["a1", "b/1", "b/2", "b0", "b1", "c"];
      await Promise.all(names.map((k) => store.put(k, Buffer.from(k))));
      const listedAfter = async (startAfter: string) =>
        (await store.list("", { startAfter })).objects.map((o) => o.key);
      expect(await listedAfter("a1")).toEqual(["b/1", "b/2", "b0", "b1", "c"]);
      // "/" sorts just before "0": starting after "b0" steps over all of "b/".
      expect(await listedAfter("b/")).toEqual(["b/1", "b/2", "b0", "b1", "c"]);
      expect(await listedAfter("b0")).toEqual(["b1", "c"]);
      expect(await listedAfter("a")).toEqual(["a1", "b/1", "b/2", "b0", "b1", "c"]);
      expect(await listedAfter("zz")).toEqual([]);
      // A page token wins over startAfter.
      const first = await store.list("", { limit: 2 });
      const next = await store.list("", {
        ...(first.nextToken ? { token: first.nextToken } : {}),
        startAfter: "b1",
      });
      expect(next.objects.map((o) => o.key)).toEqual(["b/2", "b0", "b1", "c"]);
    });

    it("deletes keys in a batch (deleteKeys), absent ones included, and refuses more than 1,000", async () => {
      const names = Array.from({ length: 30 }, (_, i) => `batch/${i}`);
      await Promise.all(names.map((k) => store.put(k, Buffer.from(k))));
      const result = await deleteKeys(store, [...names.slice(0, 20), "batch/never"]);
      expect(result.failed).toEqual([]);
      expect(await keys(store)).toEqual(names.slice(20).sort());
      await expect(
        deleteKeys(
          store,
          Array.from({ length: 1001 }, (_, i) => `x/${i}`),
        ),
      ).rejects.toThrow(/at most 1000 keys/);
    });

    it("shows nothing of a write in progress", async () => {
      const body = new PassThrough();
      const pending = store.put("pending/obj", body);
      body.write(Buffer.alloc(1000, 2));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await keys(store)).toEqual([]);
      expect(await store.head("pending/obj")).toBeUndefined();
      body.end(Buffer.alloc(24, 3));
      expect((await pending).status).toBe("written");
      expect(await keys(store)).toEqual(["pending/obj"]);
    });

    it("deletes, and deleting an absent key is fine", async () => {
      await store.put("del/a", Buffer.from("a"));
      await store.put("del/b", Buffer.from("b"));
      await store.delete("del/a");
      expect(await store.head("del/a")).toBeUndefined();
      expect(await keys(store)).toEqual(["del/b"]);
      await expect(store.delete("del/a")).resolves.toBeUndefined();
      await expect(store.delete("never/there")).resolves.toBeUndefined();
    });

    it("writes ifAbsent only once", async () => {
      const first = await store.put("once", Buffer.from("first"), {
        condition: { ifAbsent: true },
      });
      expect(first.status).toBe("written");
      const again = await store.put("once", Buffer.from("second"), {
        condition: { ifAbsent: true },
      });
      expect(again).toEqual({ status: "precondition-failed" });
      expect(await text(store, "once")).toBe("first");
      expect((await store.head("once"))?.etag).toBe(first.status === "written" ? first.etag : "");
    });

    it("writes ifAbsent only once, also when the body goes in parts", async () => {
      // Of unknown size and over S3Store's part size: a multipart upload, which S3 checks the
      // condition of as it completes the object.
      const body = (fill: number) =>
        Readable.from([Buffer.alloc(5 * MiB, fill), Buffer.alloc(5 * MiB, fill)]);
      const first = await store.put("parts/once", body(1), { condition: { ifAbsent: true } });
      if (first.status !== "written") throw new Error(`first put was ${first.status}`);
      const again = await store.put("parts/once", body(2), { condition: { ifAbsent: true } });
      expect(again).toEqual({ status: "precondition-failed" });
      expect(await store.head("parts/once")).toMatchObject({ size: 10 * MiB, etag: first.etag });
      expect((await readAll(store, "parts/once"))?.every((byte) => byte === 1)).toBe(true);
      expect(await keys(store)).toEqual(["parts/once"]);
    });

    it("writes ifMatch only over the expected version", async () => {
      const v1 = await store.put("cas", Buffer.from("v1"));
      if (v1.status !== "written") throw new Error("setup failed");
      const v2 = await store.put("cas", Buffer.from("v2"), { condition: { ifMatch: v1.etag } });
      expect(v2.status).toBe("written");
      const stale = await store.put("cas", Buffer.from("v3"), { condition: { ifMatch: v1.etag } });
      expect(stale).toEqual({ status: "precondition-failed" });
      expect(await text(store, "cas")).toBe("v2");
      const absent = await store.put("cas-none", Buffer.from("x"), {
        condition: { ifMatch: v1.etag },
      });
      expect(absent).toEqual({ status: "precondition-failed" });
      expect(await store.head("cas-none")).toBeUndefined();
    });

    it("lets exactly one of 10 concurrent ifAbsent puts win, and refuses the others", async () => {
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.put("race/absent", Buffer.from(`writer-${i}`), { condition: { ifAbsent: true } }),
        ),
      );
      expect(await text(store, "race/absent")).toBe(`writer-${oneWinner(results)}`);
    });

    it("lets exactly one of 10 concurrent ifMatch puts on one version win, and refuses the others", async () => {
      const base = await store.put("race/cas", Buffer.from("base"));
      if (base.status !== "written") throw new Error("setup failed");
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.put("race/cas", Buffer.from(`writer-${i}`), { condition: { ifMatch: base.etag } }),
        ),
      );
      expect(await text(store, "race/cas")).toBe(`writer-${oneWinner(results)}`);
    });

    it("leaves nothing under the key when the body stream fails", async () => {
      await expect(store.put("broken/unsized", failingStream(100_000))).rejects.toThrow(
        /source broke/,
      );
      await expect(store.put("broken/sized", failingStream(1000), { size: 5000 })).rejects.toThrow(
        /source broke/,
      );
      await store.put("broken/existing", Buffer.from("intact"));
      await expect(store.put("broken/existing", failingStream(10))).rejects.toThrow(/source broke/);
      expect(await store.head("broken/unsized")).toBeUndefined();
      expect(await store.head("broken/sized")).toBeUndefined();
      expect(await text(store, "broken/existing")).toBe("intact");
      expect(await keys(store)).toEqual(["broken/existing"]);
    });

    it("rejects a body whose length differs from the declared size", async () => {
      const put = store.put("sized", Readable.from([Buffer.from("12345")]), { size: 10 });
      await expect(put).rejects.toThrow(OperationError);
      expect(await store.head("sized")).toBeUndefined();
    });

    it.each(["../x", "/abs", "a//b", "a/./b", "a/..", "", "a\\b"])(
      "rejects the escaping or malformed key %j",
      async (key) => {
        await expect(store.put(key, Buffer.from("x"))).rejects.toThrow(InputError);
        await expect(store.get(key)).rejects.toThrow(InputError);
        await expect(store.head(key)).rejects.toThrow(InputError);
        await expect(store.delete(key)).rejects.toThrow(InputError);
      },
    );

    it("moves or uploads a staged file with putFile, consuming the file", async () => {
      const staging = await store.makeStagingDir();
      try {
        expect(await readdir(staging)).toEqual([]);
        const big = randomBytes(3 * MiB);
        await writeFile(join(staging, "a"), big);
        const put = await store.putFile("files/a", join(staging, "a"), {
          contentType: "application/x-nix-nar",
        });
        expect(put.status).toBe("written");
        expect(await store.head("files/a")).toMatchObject({
          size: big.length,
          etag: put.status === "written" ? put.etag : "",
        });
        expect((await readAll(store, "files/a"))?.equals(big)).toBe(true);
        // Replacing works as put does; a failed condition keeps the old object.
        await writeFile(join(staging, "b"), "replacement");
        await store.putFile("files/a", join(staging, "b"));
        expect(await text(store, "files/a")).toBe("replacement");
        await writeFile(join(staging, "c"), "loser");
        const refused = await store.putFile("files/a", join(staging, "c"), {
          condition: { ifAbsent: true },
        });
        expect(refused.status).toBe("precondition-failed");
        expect(await text(store, "files/a")).toBe("replacement");
        // Every staged file is gone, whatever the outcome, and staging never shows in listings.
        expect(await readdir(staging)).toEqual([]);
        expect(await keys(store)).toEqual(["files/a"]);
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    });

    it("rejects malformed list prefixes and limits", async () => {
      await expect(store.list("../")).rejects.toThrow(InputError);
      await expect(store.list("/")).rejects.toThrow(InputError);
      await expect(store.list("", { limit: 0 })).rejects.toThrow(InputError);
    });
  });
}

describeObjectStoreContract("FsStore", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nixship-fs-store-"));
  return {
    store: new FsStore(join(dir, "store")),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe("FsStore only", () => {
  let parent: string;
  let root: string;
  beforeEach(async () => {
    parent = await mkdtemp(join(tmpdir(), "nixship-fs-store-"));
    root = join(parent, "store");
  });
  afterEach(() => rm(parent, { recursive: true, force: true }));

  it("stages inside its root, and copies a file that lives on another file system", async () => {
    const store = new FsStore(root);
    const staging = await store.makeStagingDir();
    expect(staging.startsWith(`${root}/`)).toBe(true);
    await writeFile(join(staging, "moved"), "moved");
    const movedInode = (await stat(join(staging, "moved"))).ino;
    await store.putFile("moved", join(staging, "moved"));
    // Same file system: the very file became the object, nothing was copied.
    expect((await stat(join(root, "moved"))).ino).toBe(movedInode);
    await rm(staging, { recursive: true });
    // /dev/shm is a tmpfs, so rename(2) fails with EXDEV and putFile copies instead.
    const elsewhere = await mkdtemp("/dev/shm/nixship-putfile-");
    try {
      const source = join(elsewhere, "copied");
      await writeFile(source, "copied");
      expect((await stat(source)).dev).not.toBe((await stat(root)).dev);
      await store.putFile("copied", source);
      expect(await readdir(elsewhere)).toEqual([]);
      expect((await readAll(store, "copied"))?.toString()).toBe("copied");
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
    // Beside the objects, only the (reserved, hidden) home of staging directories, now
    // empty, which the store removes when closed.
    expect((await readdir(root)).sort()).toEqual([".staging.nixship-tmp-0", "copied", "moved"]);
    await store.close();
    expect((await readdir(root)).sort()).toEqual(["copied", "moved"]);
  });

  it("writes nothing outside its root when keys try to escape", async () => {
    const store = new FsStore(root);
    await store.put("inside", Buffer.from("ok"));
    for (const key of ["../outside", "../../tmp/x", "/abs", "a/../../x", "store/../../x"]) {
      await expect(store.put(key, Buffer.from("x"))).rejects.toThrow(InputError);
    }
    expect(await readdir(parent)).toEqual(["store"]);
    expect(await readdir(root)).toEqual(["inside"]);
  });

  it("lists in byte order where directory order would differ", async () => {
    const store = new FsStore(root);
    // '-' and '.' sort before '/', so "a-b" and "a.txt" come before everything under "a/".
    for (const key of ["a/c", "a-b", "a.txt", "a0", "a/b/c", "ab"])
      await store.put(key, Buffer.from(key));
    expect(await keys(store)).toEqual(["a-b", "a.txt", "a/b/c", "a/c", "a0", "ab"]);
    const first = await store.list("", { limit: 2 });
    expect(first.objects.map((o) => o.key)).toEqual(["a-b", "a.txt"]);
    const second = await store.list("", { limit: 2, token: first.nextToken ?? "" });
    expect(second.objects.map((o) => o.key)).toEqual(["a/b/c", "a/c"]);
  });

  it("hides leftover temp and lock files, and recovers a stale lock", async () => {
    const store = new FsStore(root);
    const v1 = await store.put("d/obj", Buffer.from("v1"));
    await writeFile(join(root, "d", ".obj.nixship-tmp-0123abcd"), "partial");
    await writeFile(join(root, "d", ".new.nixship-tmp-99"), "partial");
    const lock = join(root, "d", ".obj.nixship-lock");
    await writeFile(lock, "12345\n");
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    expect(await keys(store)).toEqual(["d/obj"]);
    expect(await store.get("d/new")).toBeUndefined();
    if (v1.status !== "written") throw new Error("setup failed");
    const started = Date.now();
    const v2 = await store.put("d/obj", Buffer.from("v2"), { condition: { ifMatch: v1.etag } });
    expect(v2.status).toBe("written");
    expect(Date.now() - started).toBeLessThan(5_000);
    await expect(stat(lock)).rejects.toThrow(/ENOENT/);
  });

  it("removes emptied directories on delete, but never the root", async () => {
    const store = new FsStore(root);
    await store.put("x/y/z", Buffer.from("1"));
    await store.delete("x/y/z");
    expect(await readdir(root)).toEqual([]);
    await mkdir(join(root, "keep"), { recursive: true });
    await store.put("keep/k", Buffer.from("1"));
    await store.delete("keep/k");
    expect(await readdir(parent)).toEqual(["store"]);
  });

  it("reports a key that collides with a directory prefix as an OperationError", async () => {
    const store = new FsStore(root);
    await store.put("a", Buffer.from("file"));
    await expect(store.put("a/b", Buffer.from("x"))).rejects.toMatchObject({
      code: "store-fs-failed",
      message: expect.stringContaining('"a/b"'),
    });
  });

  it("opens through the factory, from a bare path or a file URL, on a missing root", async () => {
    for (const url of [root, `file://${root}`]) {
      const store = await openStore(url);
      expect(await store.list("")).toEqual({ objects: [] });
      expect(await store.get("x")).toBeUndefined();
      await store.put("x", Buffer.from("1"));
      expect(await text(store, "x")).toBe("1");
      await store.delete("x");
    }
  });
});

describe.each(S3_SERVERS)("S3Store on $name", ({ name, start }) => {
  let server: S3Bucket;
  let run = 0;
  beforeAll(async () => {
    server = await start();
  });
  afterAll(() => server?.close());

  const scoped = (prefix: string) =>
    openStore(server.url.replace(`s3://${server.bucket}`, `s3://${server.bucket}/${prefix}`));

  // Each test gets its own prefix in one bucket, which also runs the whole suite through prefixes.
  describeObjectStoreContract(`S3Store (${name})`, async () => ({
    store: await scoped(`contract-${++run}`),
    cleanup: async () => {},
  }));

  it("scopes every key under the URL's prefix", async () => {
    const whole = await openStore(server.url);
    const p1 = await scoped("p1");
    try {
      await p1.put("k", Buffer.from("scoped"));
      expect(p1.url).toContain(`s3://${server.bucket}/p1?`);
      expect(await text(whole, "p1/k")).toBe("scoped");
      expect(await keys(p1)).toEqual(["k"]);
      expect(await keys(whole, "p1/")).toEqual(["p1/k"]);
      expect(await p1.head("p1/k")).toBeUndefined();
    } finally {
      await Promise.all([whole.close(), p1.close()]);
    }
  });

  it("names the bucket, the S3 error and a hint when the bucket does not exist", async () => {
    const store = await openStore(
      server.url.replace(`s3://${server.bucket}`, "s3://no-such-bucket-here"),
    );
    try {
      await expect(store.get("k")).rejects.toMatchObject({
        code: "store-s3-failed",
        message: expect.stringMatching(/no-such-bucket-here.*NoSuchBucket/),
        hint: expect.stringContaining("bucket name"),
      });
    } finally {
      await store.close();
    }
  });

  it("names the endpoint and hints at it when nothing listens there", async () => {
    const store = await openStore(`s3://${server.bucket}?endpoint=http://127.0.0.1:1`);
    try {
      await expect(store.list("")).rejects.toMatchObject({
        code: "store-s3-failed",
        message: expect.stringMatching(/127\.0\.0\.1:1.*ECONNREFUSED/),
        hint: expect.stringContaining("endpoint"),
      });
    } finally {
      await store.close();
    }
  });
});
