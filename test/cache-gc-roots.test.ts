// The roots of `cache gc`, on a small synthetic cache (no lab): a root that cannot be read (a
// release's shard, an ssh host that does not answer) stops the collection before anything is
// deleted, naming each, in a dry run too, and --skip-roots lets the operator collect without
// them, while a host's own record that does not read stops nothing (it is named, and what else
// names the host is kept: cache-gc-unread-record.test.ts); a record naming a path whose narinfo
// describes another (any agent may write its own record) keeps what its hash names, names the
// host, and the collection goes on; and every deleted path is listed, by package, in the
// report the collection keeps under gc/reports/.
import { mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGcReport } from "../src/cache/gc-reports.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { parseReleaseHead } from "../src/release/release-parse.js";
import { publishRelease } from "../src/release/release-store.js";
import { shardKeys } from "../src/release/shard-store.js";
import { writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { nixship } from "../support/cli.js";
import { allKeys, putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";
import { sshRecord } from "./support/status-records.js";

let work: string;
const key = generateSecretKey("gc-roots-1");
const releaseKey = generateSecretKey("gc-roots-release-1");

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-gc-roots-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const HELLO_OLD = syntheticPath("hello-old", "hello-2.12");
const HELLO_NEW = syntheticPath("hello-new", "hello-2.13");
const LIBFOO = syntheticPath("libfoo", "libfoo-1.0");
const LIBBAR = syntheticPath("libbar", "libbar-0.9");
const RELEASED = syntheticPath("released", "nixos-system-host-0");
const ORPHAN = "nar/1111111111111111111111111111111111111111111111111111.nar";

interface Cache {
  readonly url: string;
  readonly store: ObjectStore;
}

/**
 * A cache holding hello-2.12 (h1 runs it), hello-2.13 with libfoo under it, libbar, the
 * system of a sharded release of 300 hosts, and an orphan NAR; all two days old.
 */
async function cache(name: string): Promise<Cache> {
  const dir = join(work, name);
  const url = `file://${dir}`;
  const store = await openStore(url);
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
  await putSyntheticPath(store, key, LIBFOO, []);
  await putSyntheticPath(store, key, HELLO_NEW, [LIBFOO]);
  await putSyntheticPath(store, key, HELLO_OLD, []);
  await putSyntheticPath(store, key, LIBBAR, []);
  await putSyntheticPath(store, key, RELEASED, []);
  await store.put(ORPHAN, Buffer.from("left by a push that died"));
  const hosts: Record<string, { path: StorePath }> = { "host-0": { path: RELEASED } };
  for (let i = 1; i < 300; i++)
    hosts[`host-${i}`] = { path: syntheticPath(`h${i}`, `nixos-system-host-${i}`) };
  await publishRelease(store, {
    channel: "prod",
    hosts,
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key: releaseKey,
  });
  await writeStatus(
    store,
    sshRecord({ host: "h1", current: HELLO_OLD, desired: HELLO_OLD, previous: null }),
  );
  const old = new Date(Date.now() - 2 * 86400_000);
  for (const k of await allKeys(store)) await utimes(join(dir, k), old, old);
  return { url, store };
}

const gc = (url: string, ...extra: string[]) =>
  nixship(["cache", "gc", "--cache", url, "--grace", "0", ...extra]);

interface Report {
  readonly deletedPaths: { storePath: string; nar: string | null }[];
  readonly byPackage: { name: string; paths: string[] }[];
  readonly orphanNars: string[];
  readonly malformedRoots: { path: string; describes: string; origins: string[] }[];
  readonly skippedRoots: { name: string; problem: string }[];
  readonly unreadRecords: { host: string; problem: string; kept: string[] }[];
  readonly reportKey: string | null;
  readonly deleted: { narinfo: { objects: number } };
}

describe("cache gc fails closed on roots it cannot read", () => {
  it("a missing shard: nothing deleted, exit non-zero, named; an unreadable record beside it is not a stop; --skip-roots collects", async () => {
    const { url, store } = await cache("unreadable");
    try {
      await store.put("status/hosts/h2.json", Buffer.from("{ not json"));
      const head = await store.get("releases/prod/1.json");
      if (head === undefined) throw new Error("no release");
      const chunks: Buffer[] = [];
      for await (const c of head.body) chunks.push(c as Buffer);
      const shard = shardKeys(parseReleaseHead(Buffer.concat(chunks), "head"))[1] as string;
      await store.delete(shard);
      const before = await allKeys(store);

      for (const dry of [[], ["--dry-run"]]) {
        const r = await gc(url, "--json", ...dry);
        expect(r.code, `${dry}: ${r.stderr}`).toBe(1);
        const { error } = JSON.parse(r.stdout) as {
          error: { code: string; message: string; hint: string };
        };
        expect(error.code).toBe("gc-roots-unreadable");
        expect(error.message).toContain("nothing was deleted");
        expect(error.message).not.toContain("h2");
        expect(error.message).toContain(`releases/prod/1.json: ${shard}`);
        expect(error.hint).not.toContain("--skip-roots h2");
        expect(error.hint).toContain("--skip-roots releases/prod/1.json");
        expect(await allKeys(store)).toEqual(before);
      }

      // Text, as an operator reads it.
      const text = await gc(url);
      expect(text.code).toBe(1);
      expect(text.stderr).toContain("error: cache gc of");
      expect(text.stderr).toContain("hint: repair or rewrite what could not be read");

      // Skipping only one of them is not enough.
      const one = await gc(url, "--json", "--skip-roots", "releases/prod/1.json");
      expect(one.code).toBe(1);
      expect(await allKeys(store)).toEqual(before);

      const skip = ["releases/prod/1.json", "channels/prod.json"].flatMap((n) => [
        "--skip-roots",
        n,
      ]);
      const r = await gc(url, "--json", ...skip);
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as Report;
      // Each once: the newest releases and the history both read release 1.
      expect(report.skippedRoots.map((s) => s.name).sort()).toEqual([
        "channels/prod.json",
        "releases/prod/1.json",
      ]);
      expect(report.unreadRecords).toEqual([
        {
          host: "h2",
          problem: expect.stringContaining("the status record status/hosts/h2.json"),
          kept: [],
        },
      ]);
      expect(report.deletedPaths.map((p) => p.storePath)).toContain(HELLO_NEW);
      expect(report.deletedPaths.map((p) => p.storePath)).not.toContain(HELLO_OLD);
    } finally {
      await store.close();
    }
  });

  it("with --fleet, an ssh host that does not answer stops it too, and --skip-roots HOST collects", async () => {
    const { url, store } = await cache("silent-host");
    try {
      const fleet = join(work, "silent-fleet.json");
      // Nothing listens on port 1 of the loopback: the host does not answer.
      await writeFile(join(work, "ssh_config"), "Host *\n  Port 1\n  ConnectTimeout 5\n");
      await writeFile(
        fleet,
        JSON.stringify({
          cache: { url, publicKeys: [formatPublicKey(publicKeyOf(key))] },
          ssh: { configFile: "ssh_config" },
          hosts: { silent1: { address: "127.0.0.1", system: HELLO_OLD } },
        }),
      );
      const before = await allKeys(store);
      const r = await nixship(["cache", "gc", "--fleet", fleet, "--grace", "0", "--json"]);
      expect(r.code, r.stderr).toBe(1);
      const { error } = JSON.parse(r.stdout) as { error: { code: string; message: string } };
      expect(error.code).toBe("gc-roots-unreadable");
      expect(error.message).toContain("silent1: ssh host silent1 did not answer");
      expect(await allKeys(store)).toEqual(before);
      const skipped = await nixship([
        "cache",
        "gc",
        "--fleet",
        fleet,
        "--grace",
        "0",
        "--json",
        "--skip-roots",
        "silent1",
      ]);
      expect(skipped.code, skipped.stderr).toBe(0);
      expect((JSON.parse(skipped.stdout) as Report).skippedRoots[0]?.name).toBe("silent1");
    } finally {
      await store.close();
    }
  });
});

describe("the roots only the fleet knows", () => {
  it("with --fleet, the delta tool hosts realise (deltas.tool) is kept; without, it goes", async () => {
    const { url, store } = await cache("fleet-roots");
    try {
      const fleet = join(work, "tool-fleet.json");
      await writeFile(
        fleet,
        JSON.stringify({
          cache: { url, publicKeys: [formatPublicKey(publicKeyOf(key))] },
          deltas: { tool: LIBBAR },
          hosts: { h1: { address: "127.0.0.1", system: HELLO_OLD } },
        }),
      );
      const deleted = async (...args: string[]) => {
        const r = await nixship(["cache", "gc", ...args, "--grace", "0", "--dry-run", "--json"]);
        expect(r.code, r.stderr).toBe(0);
        const report = JSON.parse(r.stdout) as Report & {
          roots: { bySource: Record<string, number> };
        };
        return { paths: report.deletedPaths.map((p) => p.storePath), roots: report.roots };
      };
      const withFleet = await deleted("--fleet", fleet, "--stored");
      expect(withFleet.paths).not.toContain(LIBBAR);
      expect(withFleet.roots.bySource.deltas).toBe(1);
      expect((await deleted("--cache", url)).paths).toContain(LIBBAR);
    } finally {
      await store.close();
    }
  });
});

describe("a malformed root is contained", () => {
  it("a record naming <hash of an existing path>-x keeps what the hash names, names the host, and the collection goes on", async () => {
    const { url, store } = await cache("malformed");
    try {
      const wrong = `${HELLO_NEW.slice(0, "/nix/store/".length + 32)}-x`;
      await writeStatus(
        store,
        sshRecord({ host: "rogue", current: wrong, desired: wrong, previous: null }),
      );
      for (const dry of [["--dry-run"], []]) {
        const r = await gc(url, "--json", ...dry);
        expect(r.code, r.stderr).toBe(0);
        const report = JSON.parse(r.stdout) as Report;
        expect(report.malformedRoots).toEqual([
          { path: wrong, describes: HELLO_NEW, origins: ["host rogue"] },
        ]);
        // What the hash names is kept, with its closure; the rest goes.
        const gone = report.deletedPaths.map((p) => p.storePath);
        expect(gone).toEqual([LIBBAR]);
      }
      const keys = await allKeys(store);
      for (const p of [HELLO_NEW, LIBFOO, HELLO_OLD])
        expect(keys).toContain(`${p.slice(11, 43)}.narinfo`);
      const text = await gc(url, "--dry-run");
      expect(text.stderr).toContain(
        `malformed root: ${wrong} (named by host rogue): its narinfo describes ${HELLO_NEW}, which is kept`,
      );
    } finally {
      await store.close();
    }
  });
});

describe("what a collection deletes, path by path", () => {
  it("--dry-run lists the paths by package in text and --json; the collection deletes those and keeps its report", async () => {
    const { url, store } = await cache("listed");
    try {
      const dry = await gc(url, "--dry-run", "--json");
      expect(dry.code, dry.stderr).toBe(0);
      const would = JSON.parse(dry.stdout) as Report;
      expect(would.deletedPaths.map((p) => p.storePath).sort()).toEqual(
        [HELLO_NEW, LIBBAR, LIBFOO].sort(),
      );
      expect(would.deletedPaths.every((p) => p.nar?.startsWith("nar/"))).toBe(true);
      expect(would.byPackage.map((g) => g.name).sort()).toEqual(["hello", "libbar", "libfoo"]);
      expect(would.orphanNars).toEqual([ORPHAN]);
      expect(would.reportKey).toBeNull();
      expect((await allKeys(store)).filter((k) => k.startsWith("gc/"))).toEqual([]);

      const text = await gc(url, "--dry-run");
      expect(text.code).toBe(0);
      expect(text.stderr).toContain("store paths it would delete, by package (3):");
      expect(text.stderr).toMatch(
        new RegExp(`\\n    hello \\(1, [^)]+\\)\\n      ${HELLO_NEW}\\n`),
      );
      expect(text.stderr).toContain(`orphan NARs (no narinfo named them) (1): ${ORPHAN}`);

      const real = await gc(url, "--json");
      expect(real.code, real.stderr).toBe(0);
      const took = JSON.parse(real.stdout) as Report;
      expect(took.deletedPaths).toEqual(would.deletedPaths);
      expect(took.orphanNars).toEqual(would.orphanNars);
      expect(took.reportKey).toMatch(
        /^gc\/reports\/\d{4}-\d\d-\d\dT[\d-]+\.\d{3}Z-[0-9a-f]{8}\.json$/,
      );
      const kept = (await readGcReport(store, took.reportKey as string)) as Report;
      expect(kept.deletedPaths).toEqual(took.deletedPaths);
      expect(kept.orphanNars).toEqual([ORPHAN]);
      // What it listed is what went.
      const keys = await allKeys(store);
      for (const p of took.deletedPaths) {
        expect(keys).not.toContain(`${p.storePath.slice(11, 43)}.narinfo`);
        expect(keys).not.toContain(p.nar);
      }
      expect(keys).not.toContain(ORPHAN);
    } finally {
      await store.close();
    }
  });
});
