// `cache stats` and `cache pin`/`unpin`/`pins` through the CLI, on a directory cache of
// synthetic signed paths: figures, orphans both ways, untrusted narinfos; pins refused for a
// path the cache lacks, listed, and removed.
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { nixship } from "../support/cli.js";
import { putSyntheticPath, type SyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

let work: string;
let url: string;
let store: ObjectStore;
const trusted = generateSecretKey("stats-trusted-1");
const other = generateSecretKey("stats-other-1");
const pub = formatPublicKey(publicKeyOf(trusted));
let lib: SyntheticPath;
let app: SyntheticPath;
let stranger: SyntheticPath;
let broken: SyntheticPath;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-stats-"));
  url = `file://${join(work, "cache")}`;
  store = await openStore(url);
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
  lib = await putSyntheticPath(
    store,
    trusted,
    syntheticPath("lib", "lib-1.0"),
    [],
    "l".repeat(1000),
  );
  app = await putSyntheticPath(
    store,
    trusted,
    syntheticPath("app", "app-2.0"),
    [lib.path],
    "a".repeat(300),
  );
  stranger = await putSyntheticPath(store, other, syntheticPath("stranger", "stranger"), []);
  broken = await putSyntheticPath(store, trusted, syntheticPath("broken", "broken"), []);
  await store.delete(broken.narKey);
  await store.put(`nar/${"0".repeat(52)}.nar`, Buffer.from("orphan bytes"));
});
afterAll(async () => {
  await store.close();
  await rm(work, { recursive: true, force: true });
});

describe("cache stats", () => {
  it("counts paths and bytes, finds the largest closure, orphans both ways and untrusted narinfos", async () => {
    const r = await nixship(["cache", "stats", "--cache", url, "--trusted-key", pub, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.paths).toBe(4);
    expect(s.byCompression.none.paths).toBe(4);
    expect(s.largestClosures[0]).toMatchObject({ path: app.path, paths: 2 });
    expect(s.orphans.nars).toEqual({ objects: 1, bytes: "orphan bytes".length });
    expect(s.orphans.narinfos).toEqual([broken.path]);
    expect(s.untrusted).toEqual([stranger.path]);
    expect(s.requests.get).toBe(4);
    const text = await nixship(["cache", "stats", "--cache", url]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain("4 paths");
    expect(text.stdout).toContain("signatures: not checked");
  });
});

describe("cache pin, pins and unpin", () => {
  it("pins paths the cache holds, refuses one it lacks, lists them and removes them", async () => {
    const absent = syntheticPath("absent", "absent");
    const refused = await nixship([
      "cache",
      "pin",
      app.path,
      absent,
      "--name",
      "p1",
      "--cache",
      url,
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`not in the cache ${url}: ${absent}`);
    expect(refused.stderr).toContain("push the paths first");

    const pinned = await nixship([
      "cache",
      "pin",
      app.path,
      "--name",
      "p1",
      "--cache",
      url,
      "--json",
    ]);
    expect(pinned.code, pinned.stderr).toBe(0);
    expect(JSON.parse(pinned.stdout)).toEqual({ pin: "p1", paths: [app.path] });

    const listed = await nixship(["cache", "pins", "--cache", url, "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).pins).toEqual([
      expect.objectContaining({ name: "p1", paths: [{ path: app.path, present: true }] }),
    ]);

    expect((await nixship(["cache", "pin", app.path, "--name", "../x", "--cache", url])).code).toBe(
      2,
    );
    expect((await nixship(["cache", "unpin", "p1", "--cache", url])).code).toBe(0);
    const again = await nixship(["cache", "unpin", "p1", "--cache", url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("no pin named p1");
    // With --json, the shared error shape.
    const json = await nixship(["cache", "unpin", "p1", "--cache", url, "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: "pin-not-found" } });
    expect((await nixship(["cache", "pins", "--cache", url])).stdout).toContain("no pins");
  });

  it("needs a cache named: --cache or --fleet, not both; else the fleet in this directory", async () => {
    const none = await nixship(["cache", "pins"], { env: { NIXSHIP_FLEET: "" }, cwd: work });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("name the cache: --fleet FILE or --cache URL");
    const here = join(work, "here");
    await mkdir(here);
    await writeFile(
      join(here, "nixship.json"),
      JSON.stringify({
        cache: { url, publicKeys: [pub] },
        hosts: { web1: { address: "192.0.2.1", system: app.path } },
      }),
    );
    const fleetHere = await nixship(["cache", "stats", "--json"], {
      env: { NIXSHIP_FLEET: "" },
      cwd: here,
    });
    expect(fleetHere.code, fleetHere.stderr).toBe(0);
    expect(JSON.parse(fleetHere.stdout)).toMatchObject({ paths: 4, untrusted: [stranger.path] });
    const both = await nixship(["cache", "pins", "--cache", url, "--fleet", "x.json"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("not both");
  });
});

describe("a URL that holds no cache (a typo)", () => {
  it("cache gc, stats, pin, unpin and pins refuse it, exit 2, and write nothing there", async () => {
    const typo = join(work, "cahce");
    const url = `file://${typo}`;
    const expected = `error: ${url} holds no binary cache (it has no nix-cache-info)`;
    for (const argv of [
      ["cache", "gc", "--cache", url],
      ["cache", "stats", "--cache", url],
      ["cache", "pin", lib.path, "--name", "p1", "--cache", url],
      ["cache", "unpin", "p1", "--cache", url],
      ["cache", "pins", "--cache", url],
    ]) {
      const r = await nixship(argv);
      expect(r.code, `${argv.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr.split("\n")[0]).toBe(expected);
    }
    await expect(readdir(typo)).rejects.toThrow(/ENOENT/);
  });
});
