// Publishing releases to a real S3 protocol server (through the AWS SDK): with the conditional
// writes real S3 has (moto's server, and s3rver with them added), publishing works and the check is
// remembered; on a server that ignores them (plain s3rver), publishing is refused and leaves
// nothing behind, also from the CLI.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { CliIO } from "../src/cli/command.js";
import { main } from "../src/cli/main.js";
import {
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  publicKeyOf,
} from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { formatRelease, verifyRelease } from "../src/release/release-sign.js";
import {
  channelKey,
  listReleases,
  type PublishOptions,
  publishRelease,
  readChannel,
  releaseKey,
  releaseOriginKey,
} from "../src/release/release-store.js";
import { CACHE_FILE, PROBE_PREFIX } from "../src/store/conditional-writes.js";
import { listAll } from "../src/store/helpers.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { type S3Bucket, type S3Server, startS3Server } from "../support/s3-server.js";
import { S3_SERVERS } from "./support/s3-servers.js";

const key = generateSecretKey("release-s3-1");
const PUBLIC = formatPublicKey(publicKeyOf(key));
const WEB1 = `/nix/store/${"a".repeat(32)}-nixos-system-web1` as StorePath;

function options(overrides: Partial<PublishOptions> = {}): PublishOptions {
  return {
    channel: "prod",
    hosts: { web1: { path: WEB1 } },
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key,
    ...overrides,
  };
}

let work: string;
let cacheDir: string;
let plain: S3Server;
let run = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-s3-publish-"));
  cacheDir = join(work, "cache");
  // Nothing of these tests goes to ~/.cache.
  vi.stubEnv("NIXSHIP_CACHE_DIR", cacheDir);
  plain = await startS3Server("nixship-plain", { conditionalWrites: false });
});
afterAll(async () => {
  vi.unstubAllEnvs();
  await plain?.close();
  await rm(work, { recursive: true, force: true });
});

/** A store under a prefix of its own in the server's bucket, so tests do not meet. */
function storeUrl(server: S3Bucket): string {
  return server.url.replace(`s3://${server.bucket}`, `s3://${server.bucket}/run-${++run}`);
}

async function keys(store: ObjectStore, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const info of listAll(store, prefix)) found.push(info.key);
  return found;
}

/** `inner`, counting its puts and deletes. */
function counting(inner: ObjectStore): { store: ObjectStore; writes: string[] } {
  const writes: string[] = [];
  const store: ObjectStore = {
    url: inner.url,
    get: inner.get.bind(inner),
    head: inner.head.bind(inner),
    putFile: inner.putFile.bind(inner),
    makeStagingDir: inner.makeStagingDir.bind(inner),
    list: inner.list.bind(inner),
    close: inner.close.bind(inner),
    put: (k, body, o) => {
      writes.push(`put ${k}`);
      return inner.put(k, body, o);
    },
    delete: (k) => {
      writes.push(`delete ${k}`);
      return inner.delete(k);
    },
  };
  return { store, writes };
}

async function cachedUrls(): Promise<string[]> {
  const text = await readFile(join(cacheDir, CACHE_FILE), "utf8").catch(() => "{}");
  return Object.keys(JSON.parse(text) as object);
}

describe.each(S3_SERVERS)(
  "$name, a server with conditional writes (S3's behaviour)",
  ({ start }) => {
    let honest: S3Bucket;
    beforeAll(async () => {
      honest = await start("nixship-honest");
    });
    afterAll(() => honest?.close());

    describe("publishing", () => {
      it("publishes after one probe, which it removes and remembers for the store's URL", async () => {
        const url = storeUrl(honest);
        const { store, writes } = counting(await openStore(url));
        try {
          const first = await publishRelease(store, options());
          const second = await publishRelease(store, options());
          expect(second.release).toMatchObject({ seq: 2, previous: first.digest });
          // The probe (three puts and a delete) ran once, before the first release.
          const probe = writes[0]?.slice("put ".length) ?? "";
          expect(probe.startsWith(PROBE_PREFIX)).toBe(true);
          expect(writes).toEqual([
            `put ${probe}`,
            `put ${probe}`,
            `put ${probe}`,
            `delete ${probe}`,
            `put ${releaseKey("prod", 1)}`,
            `put ${channelKey("prod")}`,
            `put ${releaseKey("prod", 2)}`,
            `put ${channelKey("prod")}`,
          ]);
          expect(await keys(store)).toEqual([
            channelKey("prod"),
            releaseKey("prod", 1),
            releaseKey("prod", 2),
          ]);
          expect(await cachedUrls()).toContain(store.url);
        } finally {
          await store.close();
        }
        // Another process (a new store object) publishing to the same store within the day: no probe.
        const { store: again, writes: later } = counting(await openStore(url));
        try {
          expect((await publishRelease(again, options())).release.seq).toBe(3);
          expect(later).toEqual([`put ${releaseKey("prod", 3)}`, `put ${channelKey("prod")}`]);
        } finally {
          await again.close();
        }
      });

      it("lists no probe object as a release, even one a failed delete left behind", async () => {
        const store = await openStore(storeUrl(honest));
        try {
          await store.put(`${PROBE_PREFIX}conditional-0123456789ab.json`, Buffer.from("{}"));
          await publishRelease(store, options());
          expect((await listReleases(store, "prod")).map((e) => e.seq)).toEqual([1]);
        } finally {
          await store.close();
        }
      });
    });

    describe("nixship release refresh", () => {
      it("publishes", async () => {
        const { store, argv } = await cliSetup(honest);
        try {
          const r = await runMain([...argv, "--json"]);
          expect(r.code, r.stderr).toBe(0);
          expect(JSON.parse(r.stdout)).toMatchObject({ channel: "prod", seq: 2, replaced: 1 });
          // Release 2 and the origin document signed beside it (who refreshed it).
          expect(await keys(store)).toEqual([
            channelKey("prod"),
            releaseKey("prod", 1),
            releaseKey("prod", 2),
            releaseOriginKey("prod", 2),
          ]);
        } finally {
          await store.close();
        }
      });
    });
  },
);

describe("a server that ignores conditional writes (plain s3rver)", () => {
  it("refuses to publish, and leaves no release, no channel and no probe behind", async () => {
    const store = await openStore(storeUrl(plain));
    try {
      const refused = await publishRelease(store, options()).catch((err: unknown) => err);
      expect(refused).toMatchObject({
        code: "store-no-conditional-writes",
        exitCode: 1,
        message: expect.stringContaining(`store ${store.url} ignores If-None-Match: *`),
      });
      expect((refused as Error).message).toContain("fork the release chain");
      expect(await keys(store)).toEqual([]);
      expect(await cachedUrls()).not.toContain(store.url);
      // Not remembered either way: asked again, it probes (and refuses) again.
      await expect(publishRelease(store, options())).rejects.toMatchObject({
        code: "store-no-conditional-writes",
      });
      expect(await keys(store)).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it("nixship release refresh exits 1 with the error, the channel untouched", async () => {
    const { url, store, argv } = await cliSetup(plain);
    try {
      const r = await runMain([...argv, "--json"]);
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({
        error: {
          code: "store-no-conditional-writes",
          message: expect.stringContaining(`store ${url} ignores If-None-Match: *`),
          hint: expect.stringContaining("AWS S3 supports both"),
        },
      });
      const human = await runMain(argv);
      expect(human.code).toBe(1);
      expect(human.stderr).toMatch(/^error: store s3:\/\/nixship-plain\/run-\d+\?.* ignores /);
      expect(human.stderr).toContain("\nhint: AWS S3 supports both");
      expect(await keys(store)).toEqual([channelKey("prod"), releaseKey("prod", 1)]);
      const channel = await readChannel(store, "prod");
      if (channel.status !== "found") throw new Error(`channel is ${channel.status}`);
      expect(verifyRelease(channel.bytes, [publicKeyOf(key)], "channel").release.seq).toBe(1);
    } finally {
      await store.close();
    }
  });
});

/**
 * A store of its own on `server` whose channel holds release 1 (written by other means: plain
 * s3rver cannot publish one safely), a fleet file of one agent host on it, and the refresh argv.
 */
async function cliSetup(server: S3Bucket) {
  const url = storeUrl(server);
  const store = await openStore(url);
  const created = new Date();
  const existing = formatRelease(
    {
      version: 1,
      channel: "prod",
      seq: 1,
      created: created.toISOString(),
      expires: new Date(created.getTime() + 86400_000).toISOString(),
      previous: null,
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [] },
      confirmTimeout: 30,
      hosts: { web1: { path: WEB1 } },
    },
    key,
  );
  await store.put(releaseKey("prod", 1), existing.bytes);
  await store.put(channelKey("prod"), existing.bytes);
  const releaseKeyFile = join(work, "release.sec");
  await writeFile(releaseKeyFile, formatSecretKey(key), { mode: 0o600 });
  const fleetFile = join(work, `fleet-${run}.json`);
  await writeFile(
    fleetFile,
    JSON.stringify({
      cache: { url, publicKeys: [PUBLIC] },
      releases: { channel: "prod", publicKeys: [PUBLIC] },
      hosts: { web1: { delivery: "agent", system: WEB1 } },
    }),
  );
  const argv = ["release", "refresh", "--fleet", fleetFile, "--release-key", releaseKeyFile];
  return { url: store.url, store, argv };
}

async function runMain(
  argv: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on("data", (d: Buffer) => out.push(d));
  stderr.on("data", (d: Buffer) => err.push(d));
  const io: CliIO = { stdout, stderr, stdin: new PassThrough(), env: process.env };
  const code = await main(argv, io);
  return {
    code,
    stdout: Buffer.concat(out).toString("utf8"),
    stderr: Buffer.concat(err).toString("utf8"),
  };
}
