// A lease's holder is judged by its own expiry unless the judge can prove it
// is in the same boot and pid namespace. A deploy in another pid namespace on a machine with the
// same hostname (a container, a CI runner) holds a lease under a pid that this namespace does not
// have: the collector must wait for it, and say so, not call it dead. The same for a collection
// whose lock is held from another namespace: a push waits. Run for real: `unshare --pid --fork
// --mount-proc` (root) starts the holder, its pid set past any of this namespace's.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CacheLease } from "../src/cache/gc-lease.js";
import { generateSecretKey } from "../src/nix/keys.js";
import { openStore } from "../src/store/url.js";
import { NIXSHIP_BIN, nixship } from "../support/cli.js";
import { allKeys, putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-gc-pidns-"));
  // The holder: takes a lease (or the collection lock) with the built gc-lease.js, says its
  // pid, and lets go when its stdin says so.
  const dist = dirname(dirname(NIXSHIP_BIN));
  await writeFile(
    join(work, "holder.mjs"),
    `import { CacheLease, takeGcLock } from ${JSON.stringify(join(dist, "cache/gc-lease.js"))};
import { openStore } from ${JSON.stringify(join(dist, "store/url.js"))};
const [url, what] = process.argv.slice(2);
const store = await openStore(url);
const held = what === "lock" ? await takeGcLock(store, { waitMs: 0 }) : await CacheLease.take(store, "deploy");
console.log("held " + process.pid);
process.stdin.once("data", async () => { await held.release(); await store.close(); process.exit(0); });
`,
  );
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A pid free in this namespace (and its neighbours), for the holder's namespace to use. */
function freePid(): number {
  for (let pid = 32_000; pid > 20_000; pid -= 10) {
    if (![0, 1, 2, 3].some((d) => existsSync(`/proc/${pid + d}`))) return pid;
  }
  throw new Error("no free pid between 20,000 and 32,000");
}

/** The holder in a pid namespace of its own; resolves with its pid there once it holds. */
async function holdElsewhere(
  url: string,
  what: "lease" | "lock",
): Promise<{ child: ChildProcess; pid: number }> {
  const last = freePid();
  const child = spawn(
    "unshare",
    [
      "--pid",
      "--fork",
      "--mount-proc",
      "--kill-child",
      "sh",
      "-c",
      // Not exec: node is forked after ns_last_pid is set, so its pid is last + 1.
      `echo ${last} > /proc/sys/kernel/ns_last_pid && ${process.execPath} ${join(work, "holder.mjs")} "$0" "$1"`,
      url,
      what,
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const pid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the holder did not hold in 30 s")), 30_000);
    child.once("exit", (code) => reject(new Error(`the holder exited with ${code}`)));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      const m = /^held (\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  return { child, pid };
}

async function letGo(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once("exit", r));
  child.stdin?.write("go\n");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  child.kill("SIGKILL");
}

/** Whether this namespace has a process of that pid. */
function runsHere(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

describe("a holder in another pid namespace", () => {
  it("a live deploy's lease: the collector waits, says so, and deletes nothing", async () => {
    const dir = join(work, "lease-cache");
    const url = `file://${dir}`;
    const store = await openStore(url);
    try {
      await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
      const junk = await putSyntheticPath(
        store,
        generateSecretKey("pidns-1"),
        syntheticPath("junk", "junk-1.0"),
        [],
      );
      const old = new Date(Date.now() - 2 * 86400_000);
      for (const k of [junk.narinfoKey, junk.narKey]) await utimes(join(dir, k), old, old);
      const { child, pid } = await holdElsewhere(url, "lease");
      try {
        // Same hostname, and a pid this namespace does not have: hostname and pid alone
        // would call it dead.
        expect(runsHere(pid)).toBe(false);
        const gc = await nixship(["cache", "gc", "--cache", url, "--grace", "0", "--wait", "3"]);
        expect(gc.code, gc.stderr).toBe(1);
        expect(gc.stderr).toContain(
          "cache gc: waiting for 1 push or deploy in progress to finish:",
        );
        expect(gc.stderr).toMatch(
          new RegExp(`deploy by \\S+ pid ${pid} since \\S+: held in another pid namespace`),
        );
        expect(gc.stderr).toContain("still holds a lease on the cache after 3 s");
        const keys = await allKeys(store);
        expect(keys).toContain(junk.narinfoKey);
        expect(keys.filter((k) => k.startsWith("gc/leases/"))).toHaveLength(1);
        expect(keys).not.toContain("gc/lock.json");
      } finally {
        await letGo(child);
      }
      // Once it lets go, the collection runs.
      const gc = await nixship(["cache", "gc", "--cache", url, "--grace", "0", "--json"]);
      expect(gc.code, gc.stderr).toBe(0);
      expect(await allKeys(store)).not.toContain(junk.narinfoKey);
    } finally {
      await store.close();
    }
  }, 120_000);

  it("a collection's lock: a push's lease waits for it, and goes on once it lets go", async () => {
    const url = `file://${join(work, "lock-cache")}`;
    const store = await openStore(url);
    try {
      await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
      const { child, pid } = await holdElsewhere(url, "lock");
      expect(runsHere(pid)).toBe(false);
      const told: string[] = [];
      let leased = false;
      const taking = CacheLease.take(store, "push", {
        pollMs: 100,
        onEvent: (e) => told.push(e.type === "waiting-for-gc" ? e.holder.by : e.type),
      }).then((lease) => {
        leased = true;
        return lease;
      });
      // It waits: told once, no lease of its own left in the store meanwhile.
      const deadline = Date.now() + 30_000;
      while (told.length === 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(told).toEqual([expect.stringMatching(new RegExp(` pid ${pid}$`))]);
      await new Promise((r) => setTimeout(r, 500));
      expect(leased).toBe(false);
      await letGo(child);
      const lease = await taking;
      await lease.release();
      expect(told).toHaveLength(1);
    } finally {
      await store.close();
    }
  }, 120_000);
});
