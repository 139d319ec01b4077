// A push split between two machines, on one with the real Nix: `push --nars-only` stores the
// NARs and reports the narinfos unsigned; the deployer's commit checks them against Nix's
// record and the cache, then signs and writes them, references first. A report that lies (a
// NarHash, a FileSize) is refused by name and leaves no narinfo.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureCacheInfo } from "../src/cache/cache-info.js";
import { commitReportedNars } from "../src/cache/commit-narinfos.js";
import { queryClosure } from "../src/cache/local-nix.js";
import { formatNarReport, type NarReport, parseNarReport } from "../src/cache/nar-report.js";
import { pushNarsOnly } from "../src/cache/push.js";
import { verifyCache } from "../src/cache/verify.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { FsStore } from "../src/store/fs-store.js";
import { listAll } from "../src/store/helpers.js";
import { run } from "../support/cli.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";

let root: StorePath;
let dir: string;

beforeAll(async () => {
  root = (await buildFixtureClosure()) as StorePath;
  dir = await mkdtemp(join(tmpdir(), "nixship-nars-only-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

let caches = 0;
/** A fresh directory cache with its nix-cache-info, and the report of a NARs-only push to it. */
async function narsOnlyPush(): Promise<{ store: FsStore; report: NarReport; text: string }> {
  const store = new FsStore(join(dir, `cache-${caches++}`));
  await ensureCacheInfo(store);
  const summary = await pushNarsOnly({ store, roots: [root], compression: "zstd" });
  const text = JSON.stringify(formatNarReport(summary.unsigned, summary.presentPaths));
  return { store, report: parseNarReport(text, "the test"), text };
}

async function narinfos(store: FsStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of listAll(store, "")) if (o.key.endsWith(".narinfo")) keys.push(o.key);
  return keys;
}

describe("push --nars-only and the deployer's commit", () => {
  it("stores the NARs and no narinfo; the commit signs them, and the cache verifies", async () => {
    const { store, report } = await narsOnlyPush();
    const closure = await queryClosure([root]);
    expect(report.nars.map((n) => n.storePath).sort()).toEqual(closure.map((p) => p.path).sort());
    expect(await narinfos(store)).toEqual([]);
    for (const nar of report.nars) expect((await store.head(nar.url))?.size).toBe(nar.fileSize);

    const key = generateSecretKey("deployer-1");
    const done = await commitReportedNars({ store, key, source: "bh", report, closure });
    expect(done.committed).toHaveLength(closure.length);
    const verified = await verifyCache({ store, trusted: [publicKeyOf(key)] });
    expect(verified.problems).toEqual([]);
    expect(verified.ok).toBe(closure.length);
    // Stock Nix reads it too, trusting only the deployer's key.
    const into = join(dir, "nix-store-copy");
    const copy = await run("nix", [
      "copy",
      "--from",
      store.url,
      "--to",
      into,
      "--option",
      "trusted-public-keys",
      formatPublicKey(publicKeyOf(key)),
      root,
    ]);
    expect(copy.code, copy.stderr).toBe(0);
    // Again: the cache has every path now, so nothing is stored and all are present.
    const again = await pushNarsOnly({ store, roots: [root], compression: "zstd" });
    expect(again.unsigned).toEqual([]);
    expect(again.presentPaths).toHaveLength(closure.length);
  });

  it("refuses a NarHash its Nix did not record, by path, before any narinfo", async () => {
    const { store, text } = await narsOnlyPush();
    const closure = await queryClosure([root]);
    const doc = JSON.parse(text) as { nars: { storePath: string; narHash: string }[] };
    const lie = doc.nars[0] as { storePath: string; narHash: string };
    const other = doc.nars[1] as { narHash: string };
    lie.narHash = other.narHash;
    const report = parseNarReport(JSON.stringify(doc), "bh");
    const key = generateSecretKey("deployer-1");
    await expect(commitReportedNars({ store, key, source: "bh", report, closure })).rejects.toThrow(
      `refused the push from bh: ${lie.storePath} was reported with NarHash ${other.narHash}`,
    );
    expect(await narinfos(store)).toEqual([]);
  });

  it("refuses a NAR of another size than reported, and a path it neither stored nor the cache has", async () => {
    const { store, text } = await narsOnlyPush();
    const closure = await queryClosure([root]);
    const key = generateSecretKey("deployer-1");
    const doc = JSON.parse(text) as { nars: { storePath: string; fileSize: number }[] };
    (doc.nars[0] as { fileSize: number }).fileSize += 1;
    await expect(
      commitReportedNars({
        store,
        key,
        source: "bh",
        report: parseNarReport(JSON.stringify(doc), "bh"),
        closure,
      }),
    ).rejects.toThrow(
      /has a NAR in the cache that does not match its report: \S+: nar\/\S+ is \d+ bytes, but the narinfo says FileSize \d+/,
    );
    const dropped = doc.nars.pop() as { storePath: string };
    (doc.nars[0] as { fileSize: number }).fileSize -= 1;
    await expect(
      commitReportedNars({
        store,
        key,
        source: "bh",
        report: parseNarReport(JSON.stringify(doc), "bh"),
        closure,
      }),
    ).rejects.toThrow(`${dropped.storePath} was neither stored by it nor in the cache`);
    expect(await narinfos(store)).toEqual([]);
  });

  it("parses the report strictly: a NAR's key is its FileHash's, no unknown keys", async () => {
    const { text } = await narsOnlyPush();
    const doc = JSON.parse(text) as { nars: Record<string, unknown>[] };
    const moved = structuredClone(doc);
    (moved.nars[0] as Record<string, unknown>).url = "nix-cache-info";
    expect(() => parseNarReport(JSON.stringify(moved), "bh")).toThrow(
      /bh answered push --nars-only with nars\[0\]\.url "nix-cache-info", not nar\//,
    );
    const extra = structuredClone(doc);
    (extra.nars[0] as Record<string, unknown>).sig = "x";
    expect(() => parseNarReport(JSON.stringify(extra), "bh")).toThrow(/unknown key "sig"/);
    expect(() => parseNarReport("not json", "bh")).toThrow(/output that is not JSON/);
    // A deriver that is no store path's name is the build host's bad report, named.
    const deriver = structuredClone(doc);
    (deriver.nars[0] as Record<string, unknown>).deriver = "junk\u001b[2J.drv";
    expect(() => parseNarReport(JSON.stringify(deriver), "bh")).toThrow(
      /^bh answered push --nars-only with nars\[0\]\.deriver "\/nix\/store\/junk\\u001b\[2J\.drv", not a store path$/,
    );
  });
});
