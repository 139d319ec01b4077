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
import { fetchAndImport } from "../src/cache/fetch.js";
import { validPaths } from "../src/cache/local-nix.js";
import { parsePublicKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
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

/** Whether a process `marked` found is nix-store's import (not the fetch, nor setpriv before it). */
const isImport = (process: string): boolean => /^[0-9]+: nix-store .*--import/.test(process);

/** A fetch --import of `path` into `store`, its children marked with `mark`. */
function fetchInto(
  store: string,
  mark: string,
  env: NodeJS.ProcessEnv = {},
  what = { root: path, from: cache, trustedKey: publicKey },
) {
  const fetch = spawn(
    process.execPath,
    [
      NIXSHIP_BIN,
      "fetch",
      what.root,
      "--from",
      what.from,
      "--trusted-key",
      what.trustedKey,
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

/** A store of its own whose lock on `locked` another process holds (flock, as Nix takes it). */
async function lockedStore(name: string, locked = path) {
  const store = join(work, name);
  await mkdir(join(store, "nix/store"), { recursive: true });
  const holder = spawn("flock", [join(store, `${locked}.lock`), "sleep", "60"], {
    stdio: "ignore",
  });
  await new Promise((r) => setTimeout(r, 300));
  return { store, release: () => holder.kill() };
}

/**
 * A fetch into `locked`'s store, its import's deadline 2 s: it fails saying so (exit 1), with
 * nothing of it left running.
 */
async function expectImportDeadline(
  locked: Awaited<ReturnType<typeof lockedStore>>,
  what?: Parameters<typeof fetchInto>[3],
): Promise<void> {
  const mark = randomUUID();
  let run: ReturnType<typeof fetchInto> | undefined;
  try {
    run = fetchInto(locked.store, mark, { NIXSHIP_IMPORT_TIMEOUT: "2" }, what);
    expect(await run.code, run.stderr()).toBe(1);
    expect(run.stderr()).toMatch(/--import' took longer than 2 s, and was stopped/);
    expect(await marked(mark)).toEqual([]);
  } finally {
    run?.fetch.kill("SIGKILL");
    locked.release();
  }
}

describe("fetch --import, its import held by another Nix's lock", () => {
  it("gives up at the import's deadline, saying so, with nothing left running", async () => {
    await expectImportDeadline(await lockedStore("store-deadline"));
  }, 60_000);

  it("stops at an interrupt with its nix-store --import, exit 130", async () => {
    const { store, release } = await lockedStore("store-interrupt");
    const mark = randomUUID();
    let run: ReturnType<typeof fetchInto> | undefined;
    try {
      run = fetchInto(store, mark);
      // Until nix-store runs (the fetch's own command line says --import too), waiting on
      // the lock.
      for (let i = 0; i < 200; i++) {
        if ((await marked(mark)).some(isImport)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await marked(mark)).some(isImport), run.stderr()).toBe(true);
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

describe("fetch --import, its import stopped while the fetch still sends", () => {
  it("fails with the import's deadline, not exit 0 with nothing said", async () => {
    // A closure of two paths: the small base first, whose lock another Nix holds, then 6 MB
    // that fill the pipe while nix-store waits. The deadline stops nix-store, which closes the
    // stream the fetch was waiting to write into.
    const nixFile = join(work, "two.nix");
    await writeFile(
      nixFile,
      `{ seed }:
let
  mk = name: script: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" script ]; PATH = "/usr/bin:/bin"; };
  base = mk "fetch-base-\${seed}" "echo \${seed} > $out";
in mk "fetch-top-\${seed}" "head -c 6000000 /dev/urandom > $out; echo \${base} >> $out"
`,
    );
    const seed = randomUUID();
    const top = (
      await runOk("nix-build", ["--no-out-link", nixFile, "--argstr", "seed", seed])
    ).trim();
    const base = (await runOk("nix-store", ["--query", "--references", top])).trim();
    expect(base).toMatch(/-fetch-base-/);
    const key = await generatedKey(work, "fetch-import-2");
    const twoCache = `file://${join(work, "two-cache")}`;
    const pushed = await nixship(["push", top, "--to", twoCache, "--key", key.file]);
    expect(pushed.code, pushed.stderr).toBe(0);

    await expectImportDeadline(await lockedStore("store-two", base), {
      root: top,
      from: twoCache,
      trustedKey: key.publicKey,
    });
  }, 60_000);
});

describe("fetchAndImport, interrupted before its import starts", () => {
  it("stops there: no nix-store is started, nothing is imported", async () => {
    const store = join(work, "store-early");
    await mkdir(join(store, "nix/store"), { recursive: true });
    const objects = await openStore(cache);
    try {
      const stopped = fetchAndImport(
        { store: objects, trusted: [parsePublicKey(publicKey)] },
        path as StorePath,
        { store },
        AbortSignal.abort("interrupted (SIGINT)"),
      );
      await expect(stopped).rejects.toBe("interrupted (SIGINT)");
      expect(await validPaths([path as StorePath], { store })).toEqual(new Set());
    } finally {
      await objects.close();
    }
  }, 20_000);
});
