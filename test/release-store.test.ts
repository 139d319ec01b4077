// Releases over a real ObjectStore: numbering, the previous-digest chain, orphans, conditional
// reads, and publishers racing on one channel: on the fs store, on s3rver and on moto's server.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { readChannelToUpdate, trustedChannelRelease } from "../src/channel/trusted-release.js";
import { OperationError } from "../src/errors.js";
import { generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import type { SignedRelease } from "../src/release/release.js";
import { releaseDigest } from "../src/release/release-canonical.js";
import { parseReleaseHead } from "../src/release/release-parse.js";
import { formatRelease, verifyRelease } from "../src/release/release-sign.js";
import {
  channelKey,
  listReleaseSeqs,
  listReleases,
  MAX_RELEASE_SEQ,
  type PublishOptions,
  publishRelease,
  readChannel,
  readRelease,
  releaseKey,
  releaseOriginKey,
} from "../src/release/release-store.js";
import { loadRelease, loadVerifiedRelease, shardKeys } from "../src/release/shard-store.js";
import { readSignedRelease, successorSigned } from "../src/release/signed-release-reads.js";
import { progressKey } from "../src/status/status.js";
import { PROBE_PREFIX } from "../src/store/conditional-writes.js";
import { FsStore } from "../src/store/fs-store.js";
import { listAll, readAll } from "../src/store/helpers.js";
import type { GetOptions, ObjectStore, PutOptions } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { sayLastWords } from "../src/util/last-words.js";
import { rootsFromStore } from "../src/views/gc-roots.js";
import { readReleaseShow } from "../src/views/release-view.js";
import type { S3Bucket } from "../support/s3-server.js";
import { S3_SERVERS } from "./support/s3-servers.js";

const key = generateSecretKey("release-test-1");
const trusted = [publicKeyOf(key)];
const path = (c: string) => `/nix/store/${c.repeat(32)}-nixos-system-web` as StorePath;

/** `count` hosts, each with a system of its own. */
function manyHosts(count: number): Record<string, { path: StorePath }> {
  const nix32 = "0123456789abcdfghijklmnpqrsvwxyz";
  const hash = (i: number) =>
    Array.from({ length: 32 }, (_, d) => nix32[Math.floor(i / 32 ** (d % 4)) % 32]).join("");
  return Object.fromEntries(
    Array.from({ length: count }, (_, i) => [
      `host-${i}`,
      { path: `/nix/store/${hash(i)}-nixos-system-host-${i}` as StorePath },
    ]),
  );
}

/** When the releases of these tests are published: they expire 7 days later. */
const PUBLISHED = new Date("2026-11-21T10:00:00.000Z");

function options(overrides: Partial<PublishOptions> = {}): PublishOptions {
  return {
    channel: "prod",
    hosts: { web1: { path: path("a") }, web2: { path: path("b") } },
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [{ run: "true", timeout: 5 }] },
    confirmTimeout: 30,
    key,
    now: PUBLISHED,
    ...overrides,
  };
}

async function keys(store: ObjectStore, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const info of listAll(store, prefix)) found.push(info.key);
  return found;
}

const text = (bytes: Uint8Array | undefined) => Buffer.from(bytes ?? []).toString("utf8");

/** `inner` with some of its methods replaced (the rest bound to it, as adapters keep private state). */
function wrap(inner: ObjectStore, overrides: Partial<ObjectStore>): ObjectStore {
  return {
    url: inner.url,
    get: inner.get.bind(inner),
    head: inner.head.bind(inner),
    put: inner.put.bind(inner),
    putFile: inner.putFile.bind(inner),
    makeStagingDir: inner.makeStagingDir.bind(inner),
    list: inner.list.bind(inner),
    delete: inner.delete.bind(inner),
    close: inner.close.bind(inner),
    ...overrides,
  };
}

/** `inner`, and the keys of the GETs made through it, in order. */
function countingGets(inner: ObjectStore): { counted: ObjectStore; gets: string[] } {
  const gets: string[] = [];
  const counted = wrap(inner, {
    get: ((key: string, opts?: GetOptions) => {
      gets.push(key);
      return inner.get(key, opts);
    }) as ObjectStore["get"],
  });
  return { counted, gets };
}

/** A store whose listings come back two objects per page, to exercise pagination. */
function smallPages(inner: ObjectStore): ObjectStore {
  return wrap(inner, {
    list: (prefix: string, opts: { token?: string } = {}) =>
      inner.list(prefix, { ...opts, limit: 2 }),
  });
}

/** A store that runs `before` ahead of the first put whose key `when` accepts. */
function interfering(
  inner: ObjectStore,
  when: (key: string) => boolean,
  before: () => Promise<unknown>,
): ObjectStore {
  let fired = false;
  return wrap(inner, {
    put: async (k: string, body: Uint8Array, opts?: PutOptions) => {
      if (!fired && when(k)) {
        fired = true;
        await before();
      }
      return inner.put(k, body, opts);
    },
  });
}

function describeReleaseStore(name: string, open: () => Promise<ObjectStore>): void {
  describe(`release store: ${name}`, () => {
    let store: ObjectStore;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(() => store.close());

    it("publishes a release of more than 256 hosts sharded, and its readers give back every entry", async () => {
      const hosts = manyHosts(600);
      const signed = await publishRelease(store, options({ hosts }));
      expect(signed.release.version).toBe(2);
      expect(signed.release.hosts).toEqual(hosts);
      expect(signed.shards?.map((s) => s.hosts).reduce((a, b) => a + b)).toBe(600);
      expect(signed.shards).toHaveLength(3);
      // The shards sit outside releases/: listing the channel's releases pages through none.
      const head = parseReleaseHead(signed.bytes, "head");
      expect((await keys(store, "release-shards/")).sort()).toEqual(shardKeys(head).sort());
      expect(await keys(store, "releases/prod/")).toEqual(["releases/prod/1.json"]);
      expect(await listReleaseSeqs(store)).toEqual(new Map([["prod", [1]]]));
      // The head is small (the digests of 3 shards), and the channel a copy of it.
      expect(head.hosts).toBeUndefined();
      expect(signed.bytes.length).toBeLessThan(1024);
      const channel = await readChannel(store, "prod");
      if (channel.status !== "found") throw new Error(`channel is ${channel.status}`);
      expect(text(channel.bytes)).toBe(text(signed.bytes));

      const read = await readSignedRelease(store, "prod", 1, trusted);
      if (typeof read === "string") throw new Error(`release 1 is ${read}`);
      expect(read.release).toEqual(signed.release);
      expect(read.digest).toBe(signed.digest);
      const whole = await loadVerifiedRelease(store, channel.bytes, trusted, channelKey("prod"));
      expect(whole.release).toEqual(signed.release);
      expect((await loadRelease(store, channel.bytes, "channel")).release.hosts).toEqual(hosts);
      expect((await trustedChannelRelease(store, "prod", trusted))?.release).toEqual(
        signed.release,
      );
      const [entry] = await listReleases(store, "prod");
      expect(entry).toMatchObject({ status: "ok", seq: 1, hosts: 600, current: true });
      const shown = await readReleaseShow(store, "prod", 1, trusted, PUBLISHED);
      expect(shown.release).toEqual(signed.release);
      const roots = await rootsFromStore(store, { keepReleases: 5 });
      expect(roots.unreadable).toEqual([]);
      for (const { path: p } of Object.values(hosts)) expect(roots.roots.has(p)).toBe(true);
    });

    it("refuses a sharded release whose shard is missing or changed, naming the shard and the release", async () => {
      const signed = await publishRelease(store, options({ hosts: manyHosts(300) }));
      const [first, second] = shardKeys(parseReleaseHead(signed.bytes, "head"));
      if (first === undefined || second === undefined) throw new Error("not sharded");
      await store.delete(first);
      const load = () => loadVerifiedRelease(store, signed.bytes, trusted, "releases/prod/1.json");
      await expect(load()).rejects.toMatchObject({
        code: "release-shard-missing",
        message: expect.stringContaining(
          `${first}: shard 0 of release 1 of channel prod is missing`,
        ),
      });
      await store.put(first, signed.shards?.[0]?.bytes ?? new Uint8Array());
      const changed = text(await readAll(store, second)).replace("host-", "host-x");
      await store.put(second, Buffer.from(changed));
      await expect(load()).rejects.toMatchObject({
        code: "release-shard-mismatch",
        message: expect.stringContaining(
          `${second}: shard 1 of release 1 of channel prod does not match the digest the signed release names`,
        ),
      });
      // What no host would follow is passed over by the readers that look for a trusted release.
      expect(await readSignedRelease(store, "prod", 1, trusted)).toBe("untrusted");
      // The collector's roots: unreadable, named, so that no collection sweeps without them.
      await expect(rootsFromStore(store, { keepReleases: 5 })).resolves.toMatchObject({
        unreadable: expect.arrayContaining([
          { name: "releases/prod/1.json", problem: expect.stringContaining(second) },
        ]),
      });
    });

    it("refuses a sharded head signed by an untrusted key before reading any shard", async () => {
      const other = generateSecretKey("release-other-1");
      const signed = await publishRelease(store, options({ hosts: manyHosts(300), key: other }));
      const { counted, gets } = countingGets(store);
      await expect(
        loadVerifiedRelease(counted, signed.bytes, trusted, "releases/prod/1.json"),
      ).rejects.toMatchObject({ code: "release-untrusted-key" });
      expect(await readSignedRelease(counted, "prod", 1, trusted)).toBe("untrusted");
      expect(gets).toEqual(["releases/prod/1.json"]);
    });

    it("publishes a release of 256 hosts whole, as version 1, byte for byte", async () => {
      const hosts = manyHosts(256);
      const signed = await publishRelease(store, options({ hosts }));
      expect(signed.release.version).toBe(1);
      expect(await keys(store, "release-shards/")).toEqual([]);
      const { created, expires } = signed.release;
      const whole = formatRelease({ ...signed.release, created, expires }, key);
      expect(text(signed.bytes)).toBe(text(whole.bytes));
      expect(verifyRelease(signed.bytes, trusted, "release").release.hosts).toEqual(hosts);
    });

    it("publishes over a channel that does not parse, after the listed releases", async () => {
      await publishRelease(store, options());
      const junk = Buffer.from('{"seq": 99, "planted": true}');
      await store.put(channelKey("prod"), junk);
      const next = await publishRelease(store, options());
      // Number 2 (the channel's 99 is not a release), chained to what it replaced.
      expect(next.release).toMatchObject({ seq: 2, previous: releaseDigest(junk) });
      const channel = await readChannel(store, "prod");
      expect(channel.status === "found" && text(channel.bytes)).toBe(text(next.bytes));
    });

    it("a planted file numbered far above costs one read, and the next release is built on the newest that verifies", async () => {
      const system = (c: string) => ({ web1: { path: path(c) } });
      await publishRelease(store, options({ hosts: system("a") }));
      await publishRelease(store, options({ hosts: system("b") }));
      // Someone who can write the store but holds no key: a channel that does not verify, and
      // a release file numbered far above the channel's.
      await store.put(channelKey("prod"), Buffer.from('{"planted": true}'));
      await store.put(releaseKey("prod", 999_999_999_999), Buffer.from("{}"));
      const { counted, gets } = countingGets(store);
      const read = await readChannelToUpdate(counted, "prod", trusted);
      expect(read.trusted?.release.seq).toBe(2);
      expect(read.trusted?.release.hosts.web1?.path).toBe(path("b"));
      // The channel, the planted file, release 2: numbers that are not listed are not asked.
      expect(gets.filter((k) => k.startsWith("releases/"))).toEqual([
        releaseKey("prod", 999_999_999_999),
        releaseKey("prod", 2),
      ]);
      // A planted number at the top of what a release file may hold: no number is left above
      // it, and the publish says which file and writes nothing.
      await store.put(releaseKey("prod", 999_999_999_999_999), Buffer.from("{}"));
      const before = await keys(store, "");
      await expect(publishRelease(store, options())).rejects.toThrow(
        expect.objectContaining({
          code: "release-seq-exhausted",
          message: expect.stringContaining(
            "the release file releases/prod/999999999999999.json is numbered 999999999999999",
          ),
        }),
      );
      expect(await keys(store, "")).toEqual(before);
    });

    it("numbers releases from 1, chains each to the previous, and copies it to the channel", async () => {
      expect(await readChannel(store, "prod")).toEqual({ status: "absent" });
      expect(await listReleases(store, "prod")).toEqual([]);
      const first = await publishRelease(store, options());
      expect(first.release).toMatchObject({ seq: 1, previous: null, channel: "prod" });
      const second = await publishRelease(
        store,
        options({ hosts: { web1: { path: path("c") } }, now: new Date("2026-11-22T00:00:00Z") }),
      );
      const third = await publishRelease(store, options({ kind: "rollback" }));
      expect(second.release).toMatchObject({ seq: 2, previous: first.digest });
      expect(third.release).toMatchObject({ seq: 3, previous: second.digest, kind: "rollback" });

      expect(text(await readAll(store, releaseKey("prod", 1)))).toBe(text(first.bytes));
      expect(text(await readAll(store, releaseKey("prod", 3)))).toBe(text(third.bytes));
      const channel = await readChannel(store, "prod");
      if (channel.status !== "found") throw new Error(`channel is ${channel.status}`);
      expect(text(channel.bytes)).toBe(text(third.bytes));
      expect(verifyRelease(channel.bytes, trusted, channelKey("prod"))).toEqual(third);

      expect(await listReleases(store, "prod")).toEqual([
        {
          status: "ok",
          seq: 1,
          created: "2026-11-21T10:00:00.000Z",
          kind: "deploy",
          digest: first.digest,
          hosts: 2,
          current: false,
        },
        {
          status: "ok",
          seq: 2,
          created: "2026-11-22T00:00:00.000Z",
          kind: "deploy",
          digest: second.digest,
          hosts: 1,
          current: false,
        },
        {
          status: "ok",
          seq: 3,
          created: "2026-11-21T10:00:00.000Z",
          kind: "rollback",
          digest: third.digest,
          hosts: 2,
          current: true,
        },
      ]);
      const two = await readRelease(store, "prod", 2);
      expect(two.status === "found" && text(two.bytes)).toBe(text(second.bytes));
      expect(await readRelease(store, "prod", 9)).toEqual({ status: "absent" });
      // Channels are independent.
      expect((await publishRelease(store, options({ channel: "staging" }))).release.seq).toBe(1);
      expect(await keys(store, "channels/")).toEqual([
        "channels/prod.json",
        "channels/staging.json",
      ]);
    });

    it("withdraws a release whose channel write failed, and keeps one whose write landed though its answer was lost", async () => {
      await publishRelease(store, options());
      const failing = (lands: boolean) =>
        wrap(store, {
          put: async (k: string, body: Uint8Array, opts?: PutOptions) => {
            if (k !== channelKey("prod")) return store.put(k, body, opts);
            if (lands) await store.put(k, body, opts);
            throw new Error("the store's retries were spent");
          },
        });
      await expect(
        publishRelease(failing(false), options({ origin: { by: "ci", sources: [] } })),
      ).rejects.toThrow("the store's retries were spent");
      // No file is left above a channel that never named it (the next publisher could not tell
      // it from a replayed channel).
      expect(await keys(store, "releases/prod/")).toEqual([releaseKey("prod", 1)]);
      expect((await readChannelToUpdate(store, "prod", trusted)).trusted?.release.seq).toBe(1);
      const landed = await publishRelease(failing(true), options());
      expect(landed.release.seq).toBe(2);
      expect(await keys(store, "releases/prod/")).toEqual([
        releaseKey("prod", 1),
        releaseKey("prod", 2),
      ]);
    });

    it("answers not-modified to a channel read with the current etag", async () => {
      await publishRelease(store, options());
      const first = await readChannel(store, "prod");
      if (first.status !== "found") throw new Error(`channel is ${first.status}`);
      expect(await readChannel(store, "prod", { ifNoneMatch: first.etag })).toEqual({
        status: "not-modified",
      });
      const next = await publishRelease(store, options());
      const changed = await readChannel(store, "prod", { ifNoneMatch: first.etag });
      if (changed.status !== "found") throw new Error(`channel is ${changed.status}`);
      expect(changed.etag).not.toBe(first.etag);
      expect(text(changed.bytes)).toBe(text(next.bytes));
    });

    it("skips an orphan left by an interrupted publisher, never reusing its number", async () => {
      const first = await publishRelease(store, options());
      // A publisher wrote release 2 and died before moving the channel.
      const orphan = Buffer.from("half-published release 2\n");
      await store.put(releaseKey("prod", 2), orphan);
      await store.put("releases/prod/notes.txt", Buffer.from("not a release"));
      const next = await publishRelease(store, options());
      expect(next.release).toMatchObject({ seq: 3, previous: first.digest });
      expect((await readAll(store, releaseKey("prod", 2)))?.equals(orphan)).toBe(true);
      const listed = await listReleases(store, "prod");
      expect(listed.map((e) => [e.seq, e.status, e.current])).toEqual([
        [1, "ok", false],
        [2, "malformed", false],
        [3, "ok", true],
      ]);
      expect(listed[1]).toMatchObject({ problem: expect.stringContaining("releases/prod/2.json") });
    });

    it("builds on the newest release, not an older one copied over the channel (a replay); refuses one step back no host reported on; builds on the channel once the orphan is gone", async () => {
      const system = (c: string) => ({ web1: { path: path(c) }, web2: { path: path(c) } });
      await publishRelease(store, options({ hosts: system("a") }));
      await publishRelease(store, options({ hosts: system("a") }));
      await publishRelease(store, options({ hosts: system("b") }));
      await publishRelease(store, options({ hosts: system("b") }));
      // Someone who can write the store but holds no key copies release 2 over the channel.
      await store.put(channelKey("prod"), (await readAll(store, releaseKey("prod", 2))) as Buffer);
      const read = await readChannelToUpdate(store, "prod", trusted);
      expect(read.trusted?.release.seq).toBe(4);
      expect(read.trusted?.release.hosts.web1?.path).toBe(path("b"));
      expect(read.replayed).toEqual({ named: 2, newest: 4 });
      // Release 4 alone above the channel, on which no host reported: an interrupted publisher's,
      // or a replay whose reports were removed; which, the operator knows: refused.
      await store.put(channelKey("prod"), (await readAll(store, releaseKey("prod", 3))) as Buffer);
      await expect(readChannelToUpdate(store, "prod", trusted)).rejects.toMatchObject({
        code: "release-channel-ambiguous",
        exitCode: 2,
      });
      // A host reported on it: it was the channel's.
      await store.put(progressKey("prod", 4, "web1", "success"), Buffer.from("{}\n"));
      const reported = await readChannelToUpdate(store, "prod", trusted);
      expect(reported.trusted?.release.seq).toBe(4);
      expect(reported.replayed).toEqual({ named: 3, newest: 4 });
      // The orphan removed (the refusal's first fix): the channel stands.
      await store.delete(releaseKey("prod", 4));
      const orphaned = await readChannelToUpdate(store, "prod", trusted);
      expect(orphaned.trusted?.release.seq).toBe(3);
      expect(orphaned.replayed).toBeUndefined();
    });

    it("pages through many release files to find the next number", async () => {
      const paged = smallPages(store);
      for (let i = 0; i < 5; i++) await publishRelease(paged, options());
      await store.put(releaseKey("prod", 9), Buffer.from("orphan"));
      expect((await publishRelease(paged, options())).release.seq).toBe(10);
      // The numbers with no file below the highest are listed as missing, naming their files.
      const listed = await listReleases(paged, "prod");
      expect(listed.map((e) => `${e.seq} ${e.status}`)).toEqual([
        ...[1, 2, 3, 4, 5].map((seq) => `${seq} ok`),
        ...[6, 7, 8].map((seq) => `${seq} missing`),
        "9 malformed",
        "10 ok",
      ]);
    });

    it("refuses with release-conflict when another publisher takes the number first", async () => {
      const first = await publishRelease(store, options());
      const theirs = Buffer.from("another publisher's release 2\n");
      const racing = interfering(
        store,
        (k) => k === releaseKey("prod", 2),
        () => store.put(releaseKey("prod", 2), theirs),
      );
      await expect(publishRelease(racing, options())).rejects.toThrow(
        expect.objectContaining({
          code: "release-conflict",
          exitCode: 1,
          message:
            "another publisher published release 2 of channel prod at the same time; nothing was written; re-run to publish on top of it",
        }),
      );
      expect((await readAll(store, releaseKey("prod", 2)))?.equals(theirs)).toBe(true);
      const channel = await readChannel(store, "prod");
      expect(channel.status === "found" && text(channel.bytes)).toBe(text(first.bytes));
    });

    it("withdraws its release when another publisher moves the channel first", async () => {
      await publishRelease(store, options());
      const theirs = Buffer.from("the other publisher's channel\n");
      const racing = interfering(
        store,
        (k) => k === channelKey("prod"),
        () => store.put(channelKey("prod"), theirs),
      );
      await expect(publishRelease(racing, options())).rejects.toThrow(
        expect.objectContaining({
          code: "release-conflict",
          message: expect.stringContaining("release 2 was withdrawn"),
        }),
      );
      expect(await keys(store, "releases/")).toEqual([releaseKey("prod", 1)]);
      expect((await readAll(store, channelKey("prod")))?.equals(theirs)).toBe(true);
    });

    it("has no successor to the highest number a release may have (an agent's poll of it asks none)", async () => {
      await expect(successorSigned(store, "prod", trusted, MAX_RELEASE_SEQ)).resolves.toBe(false);
      await publishRelease(store, options());
      await publishRelease(store, options());
      expect(await successorSigned(store, "prod", trusted, 1)).toBe(true);
      expect(await successorSigned(store, "prod", trusted, 2)).toBe(false);
    });

    it.each([
      ["the release file", (k: string) => k === releaseKey("prod", 2)],
      ["the channel", (k: string) => k === channelKey("prod")],
    ])(
      "a retried write that meets its own first attempt (%s: the answer lost, the retry told precondition-failed) is taken as written",
      async (_what, which) => {
        await publishRelease(store, options());
        let lost = false;
        // The write lands, and its answer is the retry's: precondition failed.
        const retried = wrap(store, {
          put: async (k: string, body: Uint8Array, opts?: PutOptions) => {
            const landed = await store.put(k, body, opts);
            if (lost || !which(k)) return landed;
            lost = true;
            return { status: "precondition-failed" as const };
          },
        });
        const second = await publishRelease(retried, options());
        expect(lost).toBe(true);
        expect(second.release.seq).toBe(2);
        const channel = await readChannel(store, "prod");
        expect(channel.status === "found" && releaseDigest(channel.bytes)).toBe(second.digest);
        expect(await keys(store, "releases/")).toEqual([
          releaseKey("prod", 1),
          releaseKey("prod", 2),
        ]);
      },
    );

    it("a publisher made to stop at once between its release file and the channel withdraws the file first (its last words)", async () => {
      await publishRelease(store, options());
      let reached: () => void = () => {};
      let fail: (err: Error) => void = () => {};
      const atChannel = new Promise<void>((resolve) => {
        reached = resolve;
      });
      // The channel's write never ends (a store that hangs), as the process is made to stop.
      const stuck = interfering(
        store,
        (k) => k === channelKey("prod"),
        () => {
          reached();
          return new Promise<never>((_, reject) => {
            fail = reject;
          });
        },
      );
      const stopped = publishRelease(stuck, options()).catch((err: Error) => err);
      await atChannel;
      expect(await keys(store, "releases/")).toEqual([
        releaseKey("prod", 1),
        releaseKey("prod", 2),
      ]);
      await sayLastWords(30_000);
      expect(await keys(store, "releases/")).toEqual([releaseKey("prod", 1)]);
      // (The hung write ends, so that the publisher lets its last word go.)
      fail(new Error("the store hung"));
      expect(await stopped).toMatchObject({ message: "the store hung" });
      // The next publisher builds on release 1 as if nothing happened.
      const next = await publishRelease(store, options());
      expect(next.release.seq).toBe(2);
    });

    it("writes who published a release and from what beside it; release show names them, and an origin altered in the store as not to be believed", async () => {
      const origin = {
        by: "ci@builder (GitHub Actions)",
        sources: [{ flake: "github:acme/fleet", rev: "c".repeat(40), dirty: false }],
      };
      await publishRelease(store, options({ origin }));
      const signed = await publishRelease(store, options({ origin }));
      // Beside the release, under a name no listing of release numbers takes for one.
      expect(await keys(store, "releases/prod/")).toEqual([
        releaseKey("prod", 1),
        releaseOriginKey("prod", 1),
        releaseKey("prod", 2),
        releaseOriginKey("prod", 2),
      ]);
      expect((await listReleases(store, "prod")).map((e) => e.status)).toEqual(["ok", "ok"]);
      // The release itself has no field an older agent would refuse.
      expect(Object.keys(parseReleaseHead(signed.bytes, "r").head)).not.toContain("by");
      expect(text(signed.bytes)).not.toContain("ci@builder");
      const shown = await readReleaseShow(store, "prod", 2, trusted, PUBLISHED);
      expect(shown.origin).toEqual({ status: "trusted", keyName: key.name, ...origin });
      expect(shown.warnings).toEqual([]);
      // A week after it was published, release show says it has expired.
      const expiry = new Date(PUBLISHED.getTime() + 7 * 24 * 3600_000);
      expect((await readReleaseShow(store, "prod", 2, trusted, expiry)).warnings).toEqual([
        `release 2 expired at ${expiry.toISOString()}: agents refuse it; renew the channel with 'nixship release refresh'`,
      ]);
      // Someone who can write the bucket but holds no release key edits who published it.
      const stored = JSON.parse(text(await readAll(store, releaseOriginKey("prod", 2))));
      await store.put(
        releaseOriginKey("prod", 2),
        Buffer.from(JSON.stringify({ ...stored, by: "mallory@nowhere" })),
      );
      const altered = await readReleaseShow(store, "prod", 2, trusted, PUBLISHED);
      expect(altered.origin).toMatchObject({ status: "untrusted" });
      expect(JSON.stringify(altered.origin)).not.toContain("mallory");
      expect(altered.warnings.join("\n")).toMatch(/who published release 2 is not known/);
      // Release 1's origin copied beside release 2: signed, but for another release.
      await store.put(
        releaseOriginKey("prod", 2),
        (await readAll(store, releaseOriginKey("prod", 1))) ?? Buffer.from(""),
      );
      expect((await readReleaseShow(store, "prod", 2, trusted, PUBLISHED)).origin).toMatchObject({
        status: "untrusted",
        problem: expect.stringContaining("not this release"),
      });
    });

    it("withdraws its release's origin too when another publisher moves the channel first", async () => {
      await publishRelease(store, options());
      const racing = interfering(
        store,
        (k) => k === channelKey("prod"),
        () => store.put(channelKey("prod"), Buffer.from("theirs\n")),
      );
      await expect(
        publishRelease(racing, options({ origin: { by: "me@here", sources: [] } })),
      ).rejects.toThrow(expect.objectContaining({ code: "release-conflict" }));
      expect(await keys(store, "releases/")).toEqual([releaseKey("prod", 1)]);
      // Published again (after the listed releases): the number, and its origin beside it.
      await publishRelease(store, options({ origin: { by: "me@here", sources: [] } }));
      expect(await keys(store, "releases/")).toEqual([
        releaseKey("prod", 1),
        releaseKey("prod", 2),
        releaseOriginKey("prod", 2),
      ]);
    });

    it("creates a channel only if it is still absent", async () => {
      const theirs = Buffer.from("a channel created meanwhile\n");
      const racing = interfering(
        store,
        (k) => k === channelKey("prod"),
        () => store.put(channelKey("prod"), theirs),
      );
      await expect(publishRelease(racing, options())).rejects.toThrow(
        expect.objectContaining({ code: "release-conflict" }),
      );
      expect(await keys(store, "releases/")).toEqual([]);
      expect((await readAll(store, channelKey("prod")))?.equals(theirs)).toBe(true);
    });

    it("refuses bad channel names and release numbers before touching the store", async () => {
      await expect(publishRelease(store, options({ channel: "../x" }))).rejects.toThrow(
        expect.objectContaining({ code: "bad-channel", exitCode: 2 }),
      );
      await expect(readChannel(store, "Prod")).rejects.toThrow(/channel name "Prod"/);
      await expect(readRelease(store, "prod", 0)).rejects.toThrow(
        /from 1 to 999999999999999, got 0/,
      );
      expect(await keys(store, "")).toEqual([]);
    });
  });
}

/** A directory store in a temp dir of its own, which closing removes. */
async function openFsStore(): Promise<ObjectStore> {
  const dir = await mkdtemp(join(tmpdir(), "nixship-release-store-"));
  const store = new FsStore(join(dir, "store"), { fsync: false });
  return wrap(store, {
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  });
}

describeReleaseStore("FsStore", openFsStore);
describePublisherRaces("FsStore", openFsStore);

describe.each(S3_SERVERS)("S3Store on $name", ({ name, start }) => {
  let server: S3Bucket;
  let run = 0;
  beforeAll(async () => {
    // The check of the server's conditional writes is remembered in a temp dir, not ~/.cache.
    vi.stubEnv("NIXSHIP_CACHE_DIR", await mkdtemp(join(tmpdir(), "nixship-release-cache-")));
    server = await start();
  });
  afterAll(async () => {
    await rm(process.env.NIXSHIP_CACHE_DIR ?? "", { recursive: true, force: true });
    vi.unstubAllEnvs();
    await server?.close();
  });

  const open = () =>
    openStore(server.url.replace(`s3://${server.bucket}`, `s3://${server.bucket}/run-${++run}`));
  describeReleaseStore(`S3Store (${name})`, open);
  describePublisherRaces(`S3Store (${name})`, open);
});

/** Publishers racing on one channel of a store `open` gives, each test its own store. */
function describePublisherRaces(name: string, open: () => Promise<ObjectStore>): void {
  describe(`publishers racing on one channel (${name})`, () => {
    const PUBLISHERS = 8;
    const ROUNDS = 6;
    let store: ObjectStore;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(() => store.close());

    /**
     * Each publisher's view of the store, held at its first read until all have read the channel:
     * so every publisher of a round starts from the same channel version, as real racers do.
     * With `stagger`, the odd publishers list the release files only once one was written, so
     * they take the next number and race the first writer at the channel instead.
     */
    function barrierViews(
      inner: ObjectStore,
      puts: { key: string; options?: PutOptions }[],
      stagger: boolean,
    ) {
      let waiting: (() => void)[] = [];
      let written = () => {};
      const firstWritten = new Promise<void>((resolve) => {
        written = resolve;
      });
      return Array.from({ length: PUBLISHERS }, (_, i) => {
        // Each publisher's first read (the channel) waits for all the others': they all read
        // the same channel. Later reads (a loser looking at what it met) go straight through.
        let first = true;
        return wrap(inner, {
          get: async (k: string) => {
            const got = await inner.get(k);
            if (!first) return got;
            first = false;
            await new Promise<void>((resolve) => {
              waiting.push(resolve);
              if (waiting.length === PUBLISHERS) {
                for (const release of waiting) release();
                waiting = [];
              }
            });
            return got;
          },
          list: async (prefix: string, options?: { token?: string }) => {
            if (stagger && i % 2 === 1) await firstWritten;
            return inner.list(prefix, options);
          },
          put: async (k: string, body: Uint8Array, options?: PutOptions) => {
            // Each view is a new store object, so each probes the store's conditional writes
            // first (under a prefix of no channel); what is asserted here is the release puts.
            if (k.startsWith(PROBE_PREFIX)) return inner.put(k, body, options);
            puts.push({ key: k, ...(options ? { options } : {}) });
            const result = await inner.put(k, body, options);
            if (k.startsWith("releases/") && result.status === "written") written();
            return result;
          },
        });
      });
    }

    it(`lets exactly one of ${PUBLISHERS} concurrent publishers win each round`, async () => {
      const puts: { key: string; options?: PutOptions }[] = [];
      const winners: SignedRelease[] = [];
      const withdrawn: string[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const views = barrierViews(store, puts, round % 2 === 1);
        const results = await Promise.allSettled(
          views.map((view, i) =>
            publishRelease(
              view,
              options({ hosts: { web1: { path: path("abcdfghi"[i] ?? "a") } } }),
            ),
          ),
        );
        const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
        const lost = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(PUBLISHERS - 1);
        for (const err of lost) {
          expect(err).toBeInstanceOf(OperationError);
          expect(err).toMatchObject({ code: "release-conflict", exitCode: 1 });
          if ((err as Error).message.includes("withdrawn")) withdrawn.push((err as Error).message);
        }
        const [winner] = won as [SignedRelease];
        expect(winner.release.previous).toBe(winners.at(-1)?.digest ?? null);
        expect(winner.release.seq).toBeGreaterThan(winners.at(-1)?.release.seq ?? 0);
        winners.push(winner);
        const channel = await readChannel(store, "prod");
        expect(channel.status === "found" && text(channel.bytes)).toBe(text(winner.bytes));
      }
      // Only the winners' files remain, each holding exactly what its winner published.
      expect(await keys(store, "releases/")).toEqual(
        winners.map((w) => releaseKey("prod", w.release.seq)).sort(),
      );
      for (const w of winners) {
        expect(text(await readAll(store, releaseKey("prod", w.release.seq)))).toBe(text(w.bytes));
        expect(verifyRelease(w.bytes, trusted, "r").release.seq).toBe(w.release.seq);
      }
      // Staggered rounds made some publishers lose at the channel, after writing their file.
      expect(withdrawn.length).toBeGreaterThan(0);
      // Nothing was ever written unconditionally.
      for (const put of puts) {
        if (put.key.startsWith("releases/")) {
          expect(put.options?.condition).toEqual({ ifAbsent: true });
        } else {
          expect(put.key).toBe(channelKey("prod"));
          expect(put.options?.condition).toBeDefined();
        }
      }
    });

    it("keeps each winner's sharded release whole when publishers of sharded releases race", async () => {
      const puts: { key: string; options?: PutOptions }[] = [];
      const winners: SignedRelease[] = [];
      for (let round = 0; round < 2; round++) {
        const views = barrierViews(store, puts, round === 1);
        // 300 hosts each; web1's system differs by publisher, so one shard differs and the
        // others are the same bytes under the same keys.
        const results = await Promise.allSettled(
          views.map((view, i) =>
            publishRelease(
              view,
              options({ hosts: { ...manyHosts(299), web1: { path: path("abcdfghi"[i] ?? "a") } } }),
            ),
          ),
        );
        const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
        expect(won).toHaveLength(1);
        winners.push(won[0] as SignedRelease);
      }
      for (const w of winners) {
        expect(w.shards).toHaveLength(2);
        const read = await readSignedRelease(store, "prod", w.release.seq, trusted);
        if (typeof read === "string") throw new Error(`release ${w.release.seq} is ${read}`);
        expect(read.release).toEqual(w.release);
      }
      const channel = await readChannel(store, "prod");
      if (channel.status !== "found") throw new Error("no channel");
      const current = await loadVerifiedRelease(store, channel.bytes, trusted, "channel");
      expect(current.release).toEqual(winners.at(-1)?.release);
      // Shards are put before any release file, keyed by their digests.
      const first = puts.findIndex((p) => p.key.startsWith("releases/"));
      expect(puts.slice(0, first).every((p) => p.key.startsWith("release-shards/"))).toBe(true);
    });
  });
}
