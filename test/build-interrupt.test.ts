// build, plan, terraform vars and a push of a flake output stopped by a SIGTERM to nixship's
// own process (as CI and supervisors send it) while Nix builds: each stops Nix too, and exits
// 130 saying so; no build is left running on its own.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";

let work: string;
let fleet: string;
let nonce: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-build-interrupt-"));
  // A derivation of its own (a nonce) that builds for 60 s unless it is stopped.
  nonce = randomUUID().slice(0, 8);
  // The flake in a directory of its own: the signing key beside it is not copied into the store.
  await mkdir(join(work, "flake"));
  await writeFile(
    join(work, "flake", "flake.nix"),
    `{ outputs = { self }: { packages.x86_64-linux.slow = derivation { name = "slow-${nonce}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo starting; /bin/sleep 60; echo done > $out" ]; }; }; }\n`,
  );
  const key = await run(process.execPath, [
    NIXSHIP_BIN,
    "key",
    "generate",
    "--name",
    "interrupt-1",
    "--out",
    join(work, "cache.sec"),
  ]);
  expect(key.code, key.stderr).toBe(0);
  fleet = join(work, "fleet.json");
  await writeFile(
    fleet,
    JSON.stringify({
      hosts: { slow: { address: "192.0.2.1", system: `path:${join(work, "flake")}#slow` } },
    }),
  );
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Processes whose command line names the derivation (nix building it, its builder). */
async function building(): Promise<string> {
  const r = await run("pgrep", ["-af", `slow-${nonce}`]);
  return r.stdout.trim();
}

describe.each([
  ["build", () => ["build", "--fleet", fleet]],
  ["plan", () => ["plan", "--fleet", fleet]],
  ["terraform vars", () => ["terraform", "vars", "--fleet", fleet]],
  [
    "push",
    () => [
      "push",
      `path:${join(work, "flake")}#slow`,
      "--to",
      `file://${join(work, "cache")}`,
      "--key",
      join(work, "cache.sec"),
    ],
  ],
])("%s, stopped by a SIGTERM while Nix builds", (name, args) => {
  it("stops Nix and exits 130", async () => {
    const child = spawn(process.execPath, [NIXSHIP_BIN, ...args()], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG },
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.stdout.resume();
    const code = new Promise<number | null>((resolve) => child.on("close", resolve));
    // Bounded: the build starts within seconds.
    for (let i = 0; i < 300 && (await building()) === ""; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await building(), stderr).not.toBe("");
    child.kill("SIGTERM");
    expect(await code, stderr).toBe(130);
    expect(stderr).toContain(`${name}: interrupted (SIGTERM)`);
    // Nix was stopped with it (TERM, then KILL): nothing builds on.
    let left = await building();
    for (let i = 0; i < 50 && left !== ""; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      left = await building();
    }
    expect(left).toBe("");
  });
});
