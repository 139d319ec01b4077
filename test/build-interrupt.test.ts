// build, plan and terraform vars stopped by a SIGTERM to nixship's own process (as CI and
// supervisors send it) while Nix builds: each stops Nix too, and exits 130 saying so; no
// build is left running on its own.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
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
  await writeFile(
    join(work, "flake.nix"),
    `{ outputs = { self }: { packages.x86_64-linux.slow = derivation { name = "slow-${nonce}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo starting; /bin/sleep 60; echo done > $out" ]; }; }; }\n`,
  );
  fleet = join(work, "fleet.json");
  await writeFile(
    fleet,
    JSON.stringify({ hosts: { slow: { address: "192.0.2.1", system: `path:${work}#slow` } } }),
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
  ["build", ["build"]],
  ["plan", ["plan"]],
  ["terraform vars", ["terraform", "vars"]],
])("%s, stopped by a SIGTERM while Nix builds", (name, command) => {
  it("stops Nix and exits 130", async () => {
    const child = spawn(process.execPath, [NIXSHIP_BIN, ...command, "--fleet", fleet], {
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
