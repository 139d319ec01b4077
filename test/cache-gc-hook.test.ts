// The collector takes its lock first, then reads its roots. A deploy run at
// every point between two of the collector's steps (its betweenSteps hook), of a system that
// was pushed before and that no root names: before the lock it runs whole and its record roots
// the system; under the lock it waits for the collection and pushes again what went. Either
// way the system and its closure survive and `verify` passes. The hazard the order closes is
// shown too: roots read before the lock (main's order) and a whole deploy before the lock lose
// the deployed system.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectGarbage, GC_STEPS, type GcStep } from "../src/cache/gc.js";
import type { RootsRead } from "../src/cache/gc-plan.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { rootsFromStore } from "../src/views/gc-roots.js";
import { NIXSHIP_BIN } from "../support/cli.js";
import { labDeployArgs, servedBy, setExampleSystems } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let host: string;
let cache: { url: string; publicKeys: string[] };
let store: ObjectStore;
/** web-v1..3 by name, and their store paths. */
const paths: Record<string, string> = {};

beforeAll(async () => {
  lab = await startSshLab("gch", 1);
  host = lab.info.hosts[0]?.name as string;
  cache = (JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: typeof cache }).cache;
  store = await openStore(cache.url);
  for (const name of ["web-v1", "web-v2", "web-v3"]) {
    await setExampleSystems(lab.fleetFile, { [host]: name });
    const r = await lab.deploy("--json");
    expect(r.code, r.stderr).toBe(0);
    paths[name] = (await record()).current;
  }
}, 300_000);
afterAll(async () => {
  await store?.close();
  await lab?.down();
});

async function record(): Promise<{ current: string; previous: string | null }> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--stored", "--json"]);
  return (JSON.parse(r.stdout) as { hosts: { current: string; previous: string | null }[] })
    .hosts[0] as { current: string; previous: string | null };
}

/** The system the host neither runs nor can go back to: named by no root. */
async function unrooted(): Promise<string> {
  const r = await record();
  const name = Object.keys(paths).find((n) => paths[n] !== r.current && paths[n] !== r.previous);
  if (name === undefined) throw new Error(`every system is rooted: ${JSON.stringify(r)}`);
  return name;
}

/**
 * Starts `nixship deploy` of `system`; resolves `started` once it either finished or waits for
 * the collection (its gc-wait event), and `done` with its exit code and events.
 */
function startDeploy(system: string): {
  started: Promise<"finished" | "waiting">;
  done: Promise<{ code: number | null; types: string[]; stderr: string }>;
} {
  const child = spawn(
    process.execPath,
    [
      NIXSHIP_BIN,
      ...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec"), "--json"),
    ],
    {
      env: { ...process.env, NIXSHIP_LAB_DIR: dirname(lab.info.dir) },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const types: string[] = [];
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  let waiting: () => void = () => undefined;
  const sawWait = new Promise<"waiting">((r) => {
    waiting = () => r("waiting");
  });
  createInterface({ input: child.stdout }).on("line", (line) => {
    const type = (JSON.parse(line) as { type: string }).type;
    types.push(type);
    if (type === "gc-wait") waiting();
  });
  const done = new Promise<{ code: number | null; types: string[]; stderr: string }>((r) =>
    child.once("exit", (code) => r({ code, types, stderr })),
  );
  const deadline = new Promise<never>((_, reject) =>
    setTimeout(
      () => reject(new Error(`the deploy of ${system} neither ended nor waited in 180 s`)),
      180_000,
    ).unref(),
  );
  return {
    started: Promise.race([sawWait, done.then(() => "finished" as const), deadline]),
    done,
  };
}

async function verify(path: string) {
  return lab.nixship([
    "verify",
    "--cache",
    cache.url,
    "--trusted-key",
    cache.publicKeys[0] as string,
    path,
    "--json",
  ]);
}

/**
 * One collection (grace 0) with a deploy of the unrooted system at `at`; `readRoots` as the
 * collector is handed it. Returns the deployed system's name and how the deploy ran.
 */
async function collectWithDeployAt(
  at: GcStep,
  readRoots: () => Promise<RootsRead>,
): Promise<{ name: string; ran: "finished" | "waiting" }> {
  const name = await unrooted();
  // Pushed before the collection (again, if a collection took it), and rooted by nothing.
  const push = await lab.nixship([
    "push",
    paths[name] as string,
    "--to",
    cache.url,
    "--key",
    join(lab.info.dir, "cache.sec"),
  ]);
  expect(push.code, push.stderr).toBe(0);
  await setExampleSystems(lab.fleetFile, { [host]: name });
  let deploy: ReturnType<typeof startDeploy> | undefined;
  let ran: "finished" | "waiting" | undefined;
  await collectGarbage({
    store,
    readRoots,
    graceMs: 0,
    dryRun: false,
    waitMs: 180_000,
    pricePerGbMonth: 0.023,
    betweenSteps: async (step) => {
      if (step !== at) return;
      deploy = startDeploy(name);
      ran = await deploy.started;
    },
  });
  if (deploy === undefined || ran === undefined) throw new Error(`no step ${at}`);
  const done = await deploy.done;
  expect(done.code, done.stderr).toBe(0);
  return { name, ran };
}

const storeRoots = () => rootsFromStore(store, { keepReleases: 5 });

describe("a deploy between any two steps of the collector", () => {
  for (const at of GC_STEPS) {
    it(`at ${at}: the deployed system and its closure survive, and verify passes`, async () => {
      const { name, ran } = await collectWithDeployAt(at, storeRoots);
      // Before the lock the deploy runs whole; under it, it waits for the collection.
      expect(ran).toBe(at === "begin" ? "finished" : "waiting");
      expect(await servedBy(lab.info, host)).toBe(name);
      expect((await record()).current).toBe(paths[name]);
      const v = await verify(paths[name] as string);
      expect(v.code, v.stdout + v.stderr).toBe(0);
    }, 300_000);
  }

  it("roots read before the lock (main's order): the whole deploy's system is deleted (the hazard)", async () => {
    const early = await storeRoots();
    const { name, ran } = await collectWithDeployAt("begin", async () => early);
    expect(ran).toBe("finished");
    expect(await servedBy(lab.info, host)).toBe(name);
    const v = await verify(paths[name] as string);
    expect(v.code).not.toBe(0);
    expect(v.stdout + v.stderr).toContain("not in the cache");
  }, 300_000);
});
