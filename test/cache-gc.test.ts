// `cache gc`: a store holding releases of two channels, status
// records of four hosts, a pin, an orphan NAR, a listing and old unreferenced paths. gc
// --keep-releases 2 --grace 0 deletes exactly what nothing roots, on file:// and on s3rver
// (through the AWS SDK), and stock `nix copy --from` still fetches every root's closure.
import { mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { narInfoKey } from "../src/cache/layout.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { publishRelease } from "../src/release/release-store.js";
import { writeRollout } from "../src/status/rollout-store.js";
import { statusRecord } from "../src/status/status.js";
import { writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { nixCopyFrom, nixship, runOk } from "../support/cli.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import { startCacheServer } from "../support/serve.js";
import { allKeys } from "../support/synthetic-cache.js";

// Seven systems (each its own package and a shared lib), two paths nothing names, one pinned.
const EXPRESSION = `
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
    PATH = "/usr/bin:/bin";
  };
  lib = mk "gc-lib-1.0" "mkdir -p $out; echo lib > $out/lib";
  pkg = i: mk "gc-pkg\${toString i}-1.\${toString i}" "mkdir -p $out; echo pkg \${toString i} > $out/p";
  sys = i: mk "gc-system-\${toString i}" "mkdir -p $out; echo \${lib} \${pkg i} > $out/refs";
  loose = i: mk "gc-loose-\${toString i}" "mkdir -p $out; echo \${lib} loose \${toString i} > $out/refs";
in {
  s1 = sys 1; s2 = sys 2; s3 = sys 3; s4 = sys 4; s5 = sys 5; s6 = sys 6; s7 = sys 7;
  u1 = loose 1; u2 = loose 2; u3 = loose 3;
}
`;

type Name = "s1" | "s2" | "s3" | "s4" | "s5" | "s6" | "s7" | "u1" | "u2" | "u3";
const NAMES: readonly Name[] = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "u1", "u2", "u3"];

let work: string;
let s3: S3Server;
let secret: string;
let pub: string;
const built = {} as Record<Name, StorePath>;
/** Each built path's own package (a system's gc-pkgN), by name. */
const refsOf = {} as Record<Name, StorePath[]>;
const releaseKey = generateSecretKey("gc-test-release");
/** When the rollout record of ssh1's last deploy says it started. */
const rolloutAt = "2025-03-01T12:00:00.000Z";

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-gc-"));
  s3 = await startS3Server();
  const file = join(work, "gc.nix");
  await writeFile(file, EXPRESSION);
  for (const name of NAMES) {
    built[name] = (
      await runOk("nix-build", ["--no-out-link", file, "-A", name])
    ).trim() as StorePath;
    refsOf[name] = (await runOk("nix-store", ["-q", "--references", built[name]]))
      .trim()
      .split("\n") as StorePath[];
  }
  secret = join(work, "k.sec");
  pub = (await nixship(["key", "generate", "--name", "gc-cache-1", "--out", secret])).stdout.trim();
}, 120_000);

afterAll(async () => {
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

/** The hash part of a path's narinfo key. */
const narinfo = (p: string) => narInfoKey(p as StorePath);

/**
 * Fills the cache: every path pushed; releases web 1-3 (s1, s2, s3) and db 1-3 (s4, s5, s6);
 * web1 confirmed s1 on web 1 (its history); records: web1 runs s3 (before, s2), db1 s6, ssh1
 * s7, ssh2 a system the cache never had; ssh1's rollout record says it ran u2 before s7; u3
 * pinned; an orphan NAR and a listing of u1.
 */
async function fillCache(url: string): Promise<{ store: ObjectStore; orphan: string }> {
  const push = await nixship(["push", ...NAMES.map((n) => built[n]), "--to", url, "--key", secret]);
  expect(push.code, push.stderr).toBe(0);
  const store = await openStore(url);
  const publish = (channel: string, host: string, path: StorePath) =>
    publishRelease(store, {
      channel,
      hosts: { [host]: { path } },
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [] },
      confirmTimeout: 30,
      key: releaseKey,
    });
  for (const n of ["s1", "s2", "s3"] as const) await publish("web", "web1", built[n]);
  for (const n of ["s4", "s5", "s6"] as const) await publish("db", "db1", built[n]);
  const now = new Date().toISOString();
  const record = (
    host: string,
    mode: "agent" | "ssh",
    current: string,
    release: { channel: string; seq: number } | null,
    previous?: string,
  ) =>
    writeStatus(
      store,
      statusRecord({
        host,
        mode,
        release,
        desired: current,
        system: { current, generation: 1 },
        ...(previous !== undefined ? { previous } : {}),
        what: { state: "success", phase: null, error: null, rolledBack: null },
        startedAt: now,
        updatedAt: now,
      }),
    );
  await record("web1", "agent", built.s1, { channel: "web", seq: 1 });
  await record("web1", "agent", built.s3, { channel: "web", seq: 3 }, built.s2);
  await record("db1", "agent", built.s6, { channel: "db", seq: 3 });
  await record("ssh1", "ssh", built.s7, null);
  await record("ssh2", "ssh", "/nix/store/00000000000000000000000000000000-gone", null);
  // A deploy over ssh moved ssh1 from u2 to s7: its rollout record names both; no root u2.
  await writeRollout(store, {
    version: 1,
    id: "0123456789ab",
    mode: "ssh",
    action: "switch",
    state: "succeeded",
    stopped: null,
    waves: [
      {
        index: 1,
        kind: "main",
        hosts: [
          {
            host: "ssh1",
            state: "confirmed",
            phase: null,
            system: built.s7,
            before: built.u2,
            message: null,
          },
        ],
      },
    ],
    startedAt: rolloutAt,
    updatedAt: rolloutAt,
  });
  const pin = await nixship(["cache", "pin", built.u3, "--name", "keep-u3", "--cache", url]);
  expect(pin.code, pin.stderr).toBe(0);
  const orphan = "nar/0000000000000000000000000000000000000000000000000000.nar.zst";
  await store.put(orphan, Buffer.from("left by a push that died"));
  await store.put(`${narinfo(built.u1).slice(0, 32)}.ls`, Buffer.from("{}"));
  // Objects of the fleet and of other tools that a collection never touches.
  await store.put("secrets/web1/abc", Buffer.from("ciphertext"));
  await store.put("log/abc-gc-system-1.drv", Buffer.from("build log"));
  return { store, orphan };
}

function pkgOf(name: Name): StorePath {
  const pkg = refsOf[name].find((p) => /-gc-pkg\d/.test(p));
  if (pkg === undefined) throw new Error(`${name} has no package`);
  return pkg;
}

const ROOTS: readonly Name[] = ["s1", "s2", "s3", "s5", "s6", "s7", "u3"];

async function checkCollected(url: string, fetchFrom: string, store: ObjectStore, orphan: string) {
  const before = await allKeys(store);
  // A dry run reports the same and changes nothing.
  const collect = (...extra: string[]) =>
    nixship([
      "cache",
      "gc",
      "--cache",
      url,
      "--keep-releases",
      "2",
      "--grace",
      "0",
      "--json",
      ...extra,
    ]);
  const dry = await collect("--dry-run");
  expect(dry.code, dry.stderr).toBe(0);
  expect(await allKeys(store)).toEqual(before);
  // The dry run's text says why each path goes and what keeps each kept root.
  const dryText = await nixship([
    "cache",
    "gc",
    "--cache",
    url,
    "--keep-releases",
    "2",
    "--grace",
    "0",
    "--dry-run",
  ]);
  expect(dryText.code, dryText.stderr).toBe(0);
  const s4Why =
    "release 1 of channel db named it for db1, and only the newest 2 releases of a channel are kept (--keep-releases)";
  expect(dryText.stderr).toContain("  why each path goes (4):\n");
  expect(dryText.stderr).toContain(`\n    ${built.s4}: ${s4Why}\n`);
  expect(dryText.stderr).toContain(
    `\n    ${pkgOf("s4")}: only in the closure of ${built.s4}: ${s4Why}\n`,
  );
  expect(dryText.stderr).toMatch(
    new RegExp(
      `\\n {4}${built.u1}: unreferenced: no root names it and nothing kept refers to it, pushed \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\n`,
    ),
  );
  expect(dryText.stderr).toContain(
    `\n    ${built.u2}: rollout 0123456789ab (${rolloutAt}) named it for ssh1, and no status record names it now (a host's record keeps its current, desired and previous systems)\n`,
  );
  expect(dryText.stderr).toContain("  what keeps each kept root (7):\n");
  expect(dryText.stderr).toMatch(
    new RegExp(`\\n {4}${built.s3}: [a-z, ]*history[a-z, ]* \\(host web1\\)\\n`),
  );
  expect(dryText.stderr).toContain(`\n    ${built.u3}: pin (pin keep-u3)\n`);

  const gc = await collect();
  expect(gc.code, gc.stderr).toBe(0);
  const after = await allKeys(store);
  const deleted = before.filter((k) => !after.includes(k));
  const deletedNarinfos = deleted.filter((k) => k.endsWith(".narinfo")).sort();
  expect(deletedNarinfos).toEqual([built.s4, pkgOf("s4"), built.u1, built.u2].map(narinfo).sort());
  // Every deleted NAR is one no remaining narinfo names; the orphan is among them.
  const deletedNars = deleted.filter((k) => k.startsWith("nar/"));
  expect(deletedNars).toContain(orphan);
  expect(deletedNars).toHaveLength(5); // four NARs of deleted narinfos, and the orphan
  expect(deleted.filter((k) => !k.startsWith("nar/") && !k.endsWith(".narinfo"))).toEqual([
    `${narinfo(built.u1).slice(0, 32)}.ls`,
  ]);
  // Nothing of the fleet's or of another tool's was touched.
  for (const prefix of [
    "releases/",
    "channels/",
    "status/",
    "secrets/",
    "gc/pins/",
    "log/",
    "nix-cache-info",
  ]) {
    expect(after.filter((k) => k.startsWith(prefix))).toEqual(
      before.filter((k) => k.startsWith(prefix)),
    );
  }

  const real = JSON.parse(gc.stdout);
  const report = JSON.parse(dry.stdout);
  expect(report.dryRun).toBe(true);
  expect(real.dryRun).toBe(false);
  // The dry run's JSON: why for every path it would delete, and every kept root's keepers.
  const whyOf = (p: string) =>
    (report.whyDeleted as { storePath: string; why: unknown }[]).find((d) => d.storePath === p)
      ?.why;
  const release = {
    rule: "keep-releases",
    path: built.s4,
    host: "db1",
    channel: "db",
    seq: 1,
    keep: 2,
  };
  expect(whyOf(built.s4)).toEqual({ kind: "let-go", letGo: release });
  expect(whyOf(pkgOf("s4"))).toEqual({ kind: "let-go", letGo: release, via: built.s4 });
  expect(whyOf(built.u1)).toEqual({ kind: "unreferenced", pushed: expect.any(String) });
  expect(whyOf(built.u2)).toEqual({
    kind: "let-go",
    letGo: { rule: "status", path: built.u2, host: "ssh1", rollout: "0123456789ab", at: rolloutAt },
  });
  expect((report.whyDeleted as { storePath: string }[]).map((w) => w.storePath)).toEqual(
    (report.deletedPaths as { storePath: string }[]).map((d) => d.storePath),
  );
  expect(report.deletedPaths).toHaveLength(4);
  const kept = report.keptRoots as { path: string; sources: string[]; by: string[] }[];
  expect(kept.map((k) => k.path).sort()).toEqual(ROOTS.map((n) => built[n]).sort());
  expect(kept.find((k) => k.path === built.s6)).toMatchObject({ by: ["host db1"] });
  // A collection's own report (kept in the store) says neither.
  expect(real).not.toHaveProperty("keptRoots");
  expect(real).not.toHaveProperty("whyDeleted");
  // The dry run counted exactly what the collection deleted.
  expect(report.deleted).toEqual(real.deleted);
  expect(real.deleted.narinfo.objects).toBe(4);
  expect(real.deleted.nar.objects).toBe(5);
  expect(real.deleted.listing.objects).toBe(1);
  // release: s2, s3 (web 2-3), s5, s6 (db 2-3); history: s1, s3 (web1), s6 (db1); status: s2,
  // s3, s6, s7 and the system the cache never had.
  expect(real.roots.bySource).toMatchObject({ release: 4, history: 3, status: 5, pin: 1 });
  expect(real.roots.missingCount).toBe(1);
  expect(real.roots.missing[0].path).toBe("/nix/store/00000000000000000000000000000000-gone");
  expect(real.saved.bytes).toBeGreaterThan(0);
  expect(real.saved.perMonth).toBeCloseTo((real.saved.bytes / 2 ** 30) * 0.023, 12);

  // Stock Nix still fetches every root's closure, signed.
  for (const name of ROOTS) {
    const dest = join(work, `fetched-${Math.random().toString(36).slice(2)}`);
    const r = await nixCopyFrom(fetchFrom, dest, pub, built[name]);
    expect(r.code, `${name}: ${r.stderr}`).toBe(0);
  }
}

describe("cache gc --keep-releases 2 --grace 0", () => {
  it("on file://: deletes exactly what nothing roots, and Nix still fetches every root", async () => {
    const dir = join(work, "file-cache");
    const url = `file://${dir}`;
    const { store, orphan } = await fillCache(url);
    try {
      await checkCollected(url, url, store, orphan);
    } finally {
      await store.close();
    }
  }, 120_000);

  it("on s3rver through the AWS SDK: the same set, and Nix fetches every root through cache serve", async () => {
    const url = `s3://${s3.bucket}/gc-cache?region=us-east-1&endpoint=${s3.endpoint}`;
    const { store, orphan } = await fillCache(url);
    // s3rver's times have whole seconds: let the last object age past the grace of 0.
    await new Promise((r) => setTimeout(r, 1100));
    const server = await startCacheServer(url);
    try {
      await checkCollected(url, server.url, store, orphan);
    } finally {
      await server.stop();
      await store.close();
    }
  }, 120_000);

  it("--keep-days keeps what was pushed within those days; older unrooted paths go", async () => {
    const dir = join(work, "days-cache");
    const url = `file://${dir}`;
    const { store } = await fillCache(url);
    try {
      const day = 86400;
      const ago = (days: number) => new Date(Date.now() - days * day * 1000);
      // u1 was pushed ten days ago, u2 two days ago; everything else too is older than a day.
      for (const key of await allKeys(store)) {
        const at = key === narinfo(built.u2) ? ago(2) : ago(10);
        await utimes(join(dir, key), at, at);
      }
      const gc = await nixship([
        "cache",
        "gc",
        "--cache",
        url,
        "--keep-releases",
        "2",
        "--keep-days",
        "5",
        "--json",
      ]);
      expect(gc.code, gc.stderr).toBe(0);
      const report = JSON.parse(gc.stdout);
      expect(report.roots.bySource.recent).toBe(1);
      const after = await allKeys(store);
      expect(after).toContain(narinfo(built.u2));
      expect(after).not.toContain(narinfo(built.u1));
      expect(after).not.toContain(narinfo(built.s4));
    } finally {
      await store.close();
    }
  }, 120_000);
});
