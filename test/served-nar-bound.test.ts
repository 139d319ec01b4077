// The served cache (the agent's proxy, `cache serve`, `--serve-cache`) holds each NAR to the
// NarSize its signed narinfo says (src/cache/nar-bound.ts). Nix 2.8 and Nix 2.26 substitute
// through the bounded URLs it serves, for zstd, xz (sent decompressed) and uncompressed NARs;
// and a NAR a bucket writer swapped for a bomb under its genuine narinfo is cut at the signed
// size: Nix's copy fails, nothing of it is in the store, and the server's log says why.
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCacheServer, type ServedRequest } from "../src/cache/serve.js";
import { parseNarInfo } from "../src/nix/narinfo.js";
import { FsStore } from "../src/store/fs-store.js";
import { nixCopyFromArgs, nixship } from "../support/cli.js";
import {
  buildFixtureWith,
  closureLines,
  currentNix,
  type DeployerNix,
  machineNix,
} from "./support/deployer-nix.js";
import { zstdBombNar } from "./support/nar-bytes.js";

let work: string;
const machine = machineNix();
let current: DeployerNix;
let root: string;
let recorded: Map<string, string>;
let publicKey: string;
let secretKey: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-nar-bound-"));
  current = await currentNix();
  root = await buildFixtureWith(machine);
  recorded = await closureLines(machine, root);
  secretKey = join(work, "bound.sec");
  const key = await nixship(["key", "generate", "--name", "bound", "--out", secretKey]);
  expect(key.code, key.stderr).toBe(0);
  publicKey = key.stdout.trim();
}, 120_000);
afterAll(async () => {
  await current?.close();
  await rm(work, { recursive: true, force: true });
});

/** A cache of the fixture closure pushed with `compression`, served; what the server logged. */
async function servedCache(
  compression: string,
  name: string = compression,
): Promise<{ dir: string; url: string; seen: ServedRequest[]; server: Server }> {
  const dir = join(work, `cache-${name}`);
  const push = await nixship([
    "push",
    root,
    "--to",
    `file://${dir}`,
    "--key",
    secretKey,
    "--compression",
    compression,
  ]);
  expect(push.code, push.stderr).toBe(0);
  const seen: ServedRequest[] = [];
  const server = createCacheServer({ store: new FsStore(dir), onRequest: (e) => seen.push(e) });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { dir, url, seen, server };
}

/** NAR framing: a string is its length (u64, little-endian), its bytes, zeros to 8. */
describe.each(["zstd", "xz", "none"])("a %s cache served", (compression) => {
  let cache: Awaited<ReturnType<typeof servedCache>>;
  beforeAll(async () => {
    cache = await servedCache(compression);
  }, 120_000);
  afterAll(() => {
    cache.server.close();
  });

  it.each([
    ["2.8", () => machine],
    ["2.26", () => current],
  ])(
    "is copied by Nix %s through its bounded URLs",
    async (version, nixOf) => {
      const store = join(work, `store-${compression}-${version}`);
      const copy = await nixOf().run("nix", nixCopyFromArgs(cache.url, store, publicKey, root));
      expect(copy.code, `Nix ${version}: ${copy.stderr}`).toBe(0);
      expect(await closureLines(nixOf(), root, store)).toEqual(recorded);
      // Every NAR was asked for with its bound, and none was cut.
      const nars = cache.seen.filter((e) => e.key.startsWith("/nar/"));
      expect(nars.length).toBeGreaterThan(0);
      for (const nar of nars) {
        expect(nar.key).toMatch(/\?nar-size=[1-9][0-9]*&compression=(zstd|xz|none)$/);
        expect(nar.status).toBe(200);
      }
      cache.seen.length = 0;
    },
    120_000,
  );
});

describe("a NAR swapped for a bomb under its genuine signed narinfo", () => {
  it.each([
    ["2.8", () => machine],
    ["2.26", () => current],
  ])(
    "is cut at the signed NarSize before Nix %s writes past it",
    async (version, nixOf) => {
      const cache = await servedCache("zstd", `bomb-${version}`);
      try {
        const narInfoFile = join(cache.dir, `${basename(root).slice(0, 32)}.narinfo`);
        const info = parseNarInfo(await readFile(narInfoFile, "utf8"));
        // 64 MiB of zeros under a narinfo that signs a few hundred bytes.
        await writeFile(join(cache.dir, info.url), zstdBombNar(64 * 1024 * 1024));
        const store = join(work, `store-bomb-${version}`);
        const copy = await nixOf().run("nix", nixCopyFromArgs(cache.url, store, publicKey, root));
        expect(copy.code).not.toBe(0);
        const cut = cache.seen.filter((e) => e.key.startsWith(`/${info.url}?`));
        expect(cut.length).toBeGreaterThan(0);
        for (const request of cut) {
          expect(request).toMatchObject({
            status: 502,
            error: `${info.url} decompresses to more than the ${info.narSize} bytes its signed narinfo says: cut there (a NAR replaced by someone who cannot sign, or a corrupt upload)`,
          });
        }
        const check = await nixOf().run("nix", ["path-info", "--store", store, root]);
        expect(check.code).not.toBe(0);
      } finally {
        cache.server.close();
      }
    },
    180_000,
  );
});

describe("a genuine signed narinfo whose URL a bucket writer rewrote", () => {
  it.each([
    ["2.8", "a fragment", () => machine],
    ["2.26", "another server", () => current],
  ])(
    "is refused, so Nix %s never asks for the NAR unbounded (%s)",
    async (version, how, nixOf) => {
      const cache = await servedCache("zstd", `url-${version}`);
      try {
        const narInfoFile = join(cache.dir, `${basename(root).slice(0, 32)}.narinfo`);
        const text = await readFile(narInfoFile, "utf8");
        // The bomb beside the cache's NARs; the URL names it so that the bound appended to it
        // would be a fragment no client sends, or names another server (this one, as another).
        const bomb = `nar/${"0".repeat(52)}.nar.zst`;
        await writeFile(join(cache.dir, bomb), zstdBombNar(64 * 1024 * 1024));
        const url = how === "a fragment" ? `${bomb}#` : `${cache.url}/${bomb}`;
        await writeFile(narInfoFile, text.replace(/^URL: .*$/m, `URL: ${url}`));
        const store = join(work, `store-url-${version}`);
        const copy = await nixOf().run("nix", nixCopyFromArgs(cache.url, store, publicKey, root));
        expect(copy.code).not.toBe(0);
        // The narinfo was refused, naming why, and no NAR was asked for at all.
        const refused = cache.seen.filter((e) => e.key.endsWith(".narinfo") && e.status === 404);
        expect(refused.length).toBeGreaterThan(0);
        expect(refused[0]?.error).toContain(
          `URL '${url}' is no NAR key of this cache (nar/HASH.nar[.zst|.xz|.bz2], delta/HASH.nar), so its NAR cannot be held to its signed size`,
        );
        expect(cache.seen.filter((e) => e.key.startsWith("/nar/"))).toEqual([]);
        const check = await nixOf().run("nix", ["path-info", "--store", store, root]);
        expect(check.code).not.toBe(0);
      } finally {
        cache.server.close();
      }
    },
    180_000,
  );
});
