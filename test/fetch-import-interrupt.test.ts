// `nixship fetch --import` into a store where another Nix holds the path's lock: the real
// `nix-store --import` waits on it, its input all sent. The import has a deadline (it waited
// for as long as the lock was held), and an interrupt stops the fetch and its import with it
// (exit 130, no nix-store left running).
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generatedKey, NIXSHIP_BIN, nixship, runOk } from "../support/cli.js";

let work: string;
let path: string;
let cache: string;
let publicKey: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-fetch-import-"));
  const file = join(work, `fetch-import-${randomUUID()}`);
  await writeFile(file, "a path to import\n");
  path = (await runOk("nix-store", ["--add", file])).trim();
  const key = await generatedKey(work, "fetch-import-1");
  publicKey = key.publicKey;
  cache = `file://${join(work, "cache")}`;
  const pushed = await nixship(["push", path, "--to", cache, "--key", key.file]);
  expect(pushed.code, pushed.stderr).toBe(0);
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** Processes whose environment holds `mark` (the fetch's children inherit it). */
async function marked(mark: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^[0-9]+$/.test(pid)) continue;
    const env = await readFile(`/proc/${pid}/environ`, "utf8").catch(() => "");
    if (env.split("\0").includes(`NIXSHIP_TEST_MARK=${mark}`)) {
      found.push(
        `${pid}: ${(await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ")}`,
      );
    }
  }
  return found;
}

/** A fetch --import of `path` into `store`, its children marked with `mark`. */
function fetchInto(store: string, mark: string, env: NodeJS.ProcessEnv = {}) {
  const fetch = spawn(
    process.execPath,
    [
      NIXSHIP_BIN,
      "fetch",
      path,
      "--from",
      cache,
      "--trusted-key",
      publicKey,
      "--import",
      "--store",
      store,
    ],
    {
      env: { ...process.env, ...env, NIXSHIP_TEST_MARK: mark },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  fetch.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => fetch.on("close", resolve));
  const code = Promise.race([
    exited,
    new Promise<"hung">((r) => setTimeout(() => r("hung"), 20_000)),
  ]);
  return { fetch, code, stderr: () => stderr };
}

/** A store of its own whose lock on `path` another process holds (flock, as Nix takes it). */
async function lockedStore(name: string) {
  const store = join(work, name);
  await mkdir(join(store, "nix/store"), { recursive: true });
  const holder = spawn("flock", [join(store, `${path}.lock`), "sleep", "60"], { stdio: "ignore" });
  await new Promise((r) => setTimeout(r, 300));
  return { store, release: () => holder.kill() };
}

describe("fetch --import, its import held by another Nix's lock", () => {
  it("gives up at the import's deadline, saying so, with nothing left running", async () => {
    const { store, release } = await lockedStore("store-deadline");
    const mark = randomUUID();
    let run: ReturnType<typeof fetchInto> | undefined;
    try {
      run = fetchInto(store, mark, { NIXSHIP_IMPORT_TIMEOUT: "2" });
      expect(await run.code, run.stderr()).toBe(1);
      expect(run.stderr()).toMatch(/--import' took longer than 2 s, and was stopped/);
      expect(await marked(mark)).toEqual([]);
    } finally {
      run?.fetch.kill("SIGKILL");
      release();
    }
  }, 60_000);

  it("stops at an interrupt with its nix-store --import, exit 130", async () => {
    const { store, release } = await lockedStore("store-interrupt");
    const mark = randomUUID();
    let run: ReturnType<typeof fetchInto> | undefined;
    try {
      run = fetchInto(store, mark);
      // Until the import runs, waiting on the lock.
      for (let i = 0; i < 200; i++) {
        if ((await marked(mark)).some((p) => / --import/.test(p))) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(
        (await marked(mark)).some((p) => / --import/.test(p)),
        run.stderr(),
      ).toBe(true);
      await new Promise((r) => setTimeout(r, 1000));
      run.fetch.kill("SIGINT");
      expect(await run.code, run.stderr()).toBe(130);
      const until = Date.now() + 5000;
      while ((await marked(mark)).length > 0 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await marked(mark)).toEqual([]);
    } finally {
      run?.fetch.kill("SIGKILL");
      release();
    }
  }, 60_000);
});
