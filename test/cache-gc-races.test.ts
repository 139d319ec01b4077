// A collection that runs beside others: a gc racing pushes never
// leaves a narinfo without its NAR or a closure without a reference, and the pushed paths
// survive (run many times, bounded); a gc killed with SIGKILL mid-sweep leaves a cache that
// verifies, and the next one finishes the job.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { walkClosure } from "../src/cache/closure-walk.js";
import { narInfoHashOf } from "../src/cache/inventory.js";
import { writePin } from "../src/cache/pins.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { NIXSHIP_BIN, nixship, runOk } from "../support/cli.js";
import { allKeys, putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

let work: string;
let secret: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-gc-race-"));
  secret = join(work, "k.sec");
  await nixship(["key", "generate", "--name", "gc-race-1", "--out", secret]);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Every narinfo's NAR is there, and every reference's narinfo: the cache is whole. */
async function expectWhole(store: ObjectStore): Promise<void> {
  const keys = await allKeys(store);
  const narinfos = keys.map(narInfoHashOf).filter((h) => h !== undefined);
  const walk = await walkClosure(store, narinfos);
  expect(walk.missing).toEqual([]);
  const present = new Set(keys);
  const withoutNar = [...walk.found.values()]
    .filter((i) => !present.has(i.url))
    .map((i) => i.storePath);
  expect(withoutNar).toEqual([]);
}

async function age(dir: string, keys: readonly string[], days: number): Promise<void> {
  const at = new Date(Date.now() - days * 86400_000);
  for (const key of keys) await utimes(join(dir, key), at, at);
}

describe("cache gc racing pushes", () => {
  it("never leaves a narinfo without its NAR, and what each push pushed survives with its closure (8 rounds)", async () => {
    const dir = join(work, "race-cache");
    const url = `file://${dir}`;
    const nixFile = join(work, "race.nix");
    await writeFile(
      nixFile,
      `{ seed }:
let
  mk = name: script: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" script ]; PATH = "/usr/bin:/bin"; };
  base = mk "race-base" "mkdir -p $out; echo base > $out/b";
in mk "race-top-\${seed}" "mkdir -p $out; echo \${base} \${seed} > $out/t"
`,
    );
    const build = async (seed: string) =>
      (
        await runOk("nix-build", ["--no-out-link", nixFile, "--argstr", "seed", seed])
      ).trim() as StorePath;
    // The base is in the cache, old, and named by nothing: each push below skips it (it is
    // there) and pushes a new top that needs it.
    const first = await build(`first-${process.pid}`);
    expect((await nixship(["push", first, "--to", url, "--key", secret])).code).toBe(0);
    const store = await openStore(url);
    const key = generateSecretKey("junk");
    try {
      for (let round = 0; round < 8; round++) {
        await age(dir, await allKeys(store), 2);
        // Old junk nothing names: the collection has work of its own each round.
        const junk = await putSyntheticPath(store, key, syntheticPath(`junk-${round}`, "junk"), []);
        await age(dir, [junk.narinfoKey, junk.narKey], 2);
        const top = await build(`round-${round}-${process.pid}`);
        // Push and collect at once, the collection started a little before or after the push.
        const offset = (round % 4) * 60;
        const [push, gc] = await Promise.all([
          delay(round % 2 === 0 ? offset : 0).then(() =>
            nixship(["push", top, "--to", url, "--key", secret]),
          ),
          delay(round % 2 === 1 ? offset : 0).then(() =>
            nixship([
              "cache",
              "gc",
              "--cache",
              url,
              "--grace",
              "1",
              "--keep-releases",
              "1",
              "--wait",
              "60",
              "--json",
            ]),
          ),
        ]);
        expect(push.code, push.stderr).toBe(0);
        expect(gc.code, gc.stderr).toBe(0);
        await expectWhole(store);
        // The pushed top and the base it skipped are both there; the junk is gone.
        const closure = await walkClosure(store, [top]);
        expect(closure.missing).toEqual([]);
        expect(closure.found.size).toBe(2);
        expect((await allKeys(store)).includes(junk.narinfoKey)).toBe(false);
      }
    } finally {
      await store.close();
    }
  }, 240_000);
});

describe("cache gc killed with SIGKILL", () => {
  it("leaves a cache that verifies, mid-narinfos and mid-NARs, and the next gc finishes", async () => {
    const dir = join(work, "kill-cache");
    const url = `file://${dir}`;
    // Filled without an fsync per object (6,100 of them): the collections run on `url`'s store.
    const store = await openStore(`${url}?fsync=false`);
    const key = generateSecretKey("gc-kill-1");
    const pub = formatPublicKey(publicKeyOf(key));
    try {
      await store.put(
        "nix-cache-info",
        Buffer.from("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"),
      );
      // A pinned chain of 50 paths, kept; 3,000 paths in chains of 10, deleted.
      const kept: StorePath[] = [];
      for (let i = 0; i < 50; i++) {
        const p = syntheticPath(`kept-${i}`, `kept-${i}`);
        await putSyntheticPath(store, key, p, kept.slice(-1));
        kept.push(p);
      }
      await writePin(store, {
        name: "chain",
        paths: [kept.at(-1) as StorePath],
        created: new Date().toISOString(),
      });
      let previous: StorePath | undefined;
      for (let i = 0; i < 3000; i++) {
        const p = syntheticPath(`doomed-${i}`, `doomed-${i}`);
        await putSyntheticPath(
          store,
          key,
          p,
          i % 10 === 0 || previous === undefined ? [] : [previous],
        );
        previous = p;
      }
      await age(dir, await allKeys(store), 2);
      const narinfos = async () =>
        (await readdir(dir)).filter((n) => n.endsWith(".narinfo")).length;
      const nars = async () => (await readdir(join(dir, "nar"))).length;
      expect(await narinfos()).toBe(3050);

      // Killed once some narinfos are gone, then once some NARs are gone.
      for (const [what, count, below] of [
        ["narinfos", narinfos, 3050 - 200],
        ["NARs", nars, 3050 - 200],
      ] as const) {
        const child = spawnGc(url);
        const killed = await killWhen(child, async () => (await count()) < below);
        expect(killed, `the gc ended before any ${what} went`).toBe(true);
        await expectWhole(store);
        const v = await nixship(["verify", "--cache", url, "--trusted-key", pub, "--json"]);
        expect(v.code, v.stdout).toBe(0);
      }
      // The killed collector's lock is judged stale by its pid: the next one runs at once.
      const gc = await nixship(["cache", "gc", "--cache", url, "--grace", "0", "--json"]);
      expect(gc.code, gc.stderr).toBe(0);
      expect(await narinfos()).toBe(50);
      expect(await nars()).toBe(50);
      await expectWhole(store);
    } finally {
      await store.close();
    }
  }, 240_000);
});

function spawnGc(url: string): ChildProcess {
  return spawn(
    process.execPath,
    [NIXSHIP_BIN, "cache", "gc", "--cache", url, "--grace", "0", "--json"],
    {
      stdio: "ignore",
    },
  );
}

/** Polls `condition` every 2 ms and SIGKILLs the child once it holds; false if the child ended first. */
async function killWhen(child: ChildProcess, condition: () => Promise<boolean>): Promise<boolean> {
  let ended = false;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  void exited.then(() => {
    ended = true;
  });
  const deadline = Date.now() + 60_000;
  while (!ended && Date.now() < deadline) {
    if (await condition()) {
      child.kill("SIGKILL");
      await exited;
      return true;
    }
    await delay(2);
  }
  child.kill("SIGKILL");
  await exited;
  return false;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
