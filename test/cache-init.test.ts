// Only push and `cache init` make a cache: a deploy or `cache serve` aimed at a directory with
// no nix-cache-info (a typo) fails with a hint and creates nothing.
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";

let work: string;
let key: string;
let root: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-cache-init-"));
  key = join(work, "cache.sec");
  await nixship(["key", "generate", "--name", "init-1", "--out", key]);
  root = await buildFixtureClosure();
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("a URL that holds no cache", () => {
  it("fails a deploy before the build, with the fix, and creates nothing", async () => {
    const typo = join(work, "cahce");
    const fleet = join(work, "nixship.json");
    const pub = (await nixship(["key", "public", key])).stdout.trim();
    await writeFile(
      fleet,
      JSON.stringify({
        cache: { url: `file://${typo}`, publicKeys: [pub] },
        hosts: { web1: { address: "192.0.2.10", system: root } },
      }),
    );
    const r = await nixship(["deploy", "--fleet", fleet, "--key", key]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`file://${typo} holds no binary cache (it has no nix-cache-info)`);
    expect(r.stderr).toContain(`run 'nixship cache init file://${typo}'`);
    await expect(readdir(typo)).rejects.toThrow(/ENOENT/);
  });

  it("fails cache serve instead of listening", async () => {
    const empty = await mkdtemp(join(work, "empty-"));
    const r = await nixship(["cache", "serve", `file://${empty}`, "--listen", "127.0.0.1:0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("holds no binary cache");
    expect(r.stderr).not.toContain("listening");
    expect(await readdir(empty)).toEqual([]);
  });
});

describe("cache init", () => {
  it("makes a cache once, and says so; a second run changes nothing", async () => {
    const dir = join(work, "new-cache");
    const first = await nixship(["cache", "init", `file://${dir}`, "--json"]);
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual({ cache: `file://${dir}`, created: true });
    const info = await readFile(join(dir, "nix-cache-info"), "utf8");
    expect(info).toContain("StoreDir: /nix/store");
    const second = await nixship(["cache", "init", `file://${dir}`]);
    expect(second.code).toBe(0);
    expect(second.stderr).toBe(`already a cache: file://${dir}\n`);
    expect(await readFile(join(dir, "nix-cache-info"), "utf8")).toBe(info);
  });

  it("fails at once where no directory can be made (under /proc), naming it", {
    timeout: 30_000,
  }, async () => {
    // Node's recursive mkdir spun there at full CPU, for ever.
    const r = await nixship(["cache", "init", "file:///proc/nixship-cache-init/c"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "ENOENT: no such file or directory, mkdir '/proc/nixship-cache-init'",
    );
  });

  it("refuses a cache for another store directory", async () => {
    const dir = await mkdtemp(join(work, "other-"));
    await writeFile(join(dir, "nix-cache-info"), "StoreDir: /gnu/store\n");
    const r = await nixship(["cache", "init", `file://${dir}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("is for store directory /gnu/store, not /nix/store");
  });
});
