// init, a command that keeps no trap of its own, stopped by a signal while Nix evaluates the
// flake: the evaluation is stopped before nixship exits 130 (SIGTERM, then SIGKILL for one that
// ignores it: Nix 2.8's evaluator checks for interrupts nowhere in a loop of builtins), and
// nothing is left running or half written.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";

let work: string;
let flake: string;

beforeAll(async () => {
  // The flake's directory names a nonce: the evaluation's command line names the directory.
  work = await mkdtemp(join(tmpdir(), "nixship-init-interrupt-"));
  flake = join(work, `flake-${randomUUID().slice(0, 8)}`);
  await mkdir(flake);
  // Minutes of arithmetic before the evaluator knows the configurations' names.
  await writeFile(
    join(flake, "flake.nix"),
    `{ outputs = { self }: let inner = builtins.genList (x: x) 100000; in {
  nixosConfigurations =
    if builtins.foldl' (acc: i: acc + builtins.foldl' (a: j: a + j) 0 inner) 0 inner > 0
    then { } else { };
}; }\n`,
  );
});

afterAll(async () => {
  await run("pkill", ["-KILL", "-f", flake]);
  await rm(work, { recursive: true, force: true });
});

/**
 * The Nix processes whose command line names the flake (Nix evaluating it): a command that is
 * Nix itself, not nixship's own node process, whose command line names the flake too (and
 * "nix" in "nixship"): a signal sent once that one shows would come before nixship has its
 * handlers on a loaded machine, and kill it outright.
 */
async function evaluating(): Promise<string> {
  const r = await run("pgrep", ["-af", flake]);
  return r.stdout
    .split("\n")
    .filter((l) => /^nix(-[a-z]+)?$/.test(basename(l.split(" ")[1] ?? "")))
    .join("\n");
}

async function until(test: () => Promise<boolean>, tries: number): Promise<void> {
  for (let i = 0; i < tries && !(await test()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe.each([
  ["SIGTERM", 1],
  ["SIGINT", 1],
  // The second one does not wait for the evaluation to take SIGTERM: it is killed at once.
  ["SIGTERM", 2],
] as const)("init, stopped by %s (%i of them) while Nix evaluates", (sig, signals) => {
  it("stops the evaluation, exits 130 saying so, and writes nothing", async () => {
    const cache = join(work, `cache-${sig}-${signals}`);
    const child = spawn(
      process.execPath,
      [NIXSHIP_BIN, "init", flake, "--cache", `file://${cache}`, "--json"],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG } },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const code = new Promise<number | null>((resolve) => child.on("close", resolve));
    // Bounded: the evaluation starts within seconds; then it is in its loop.
    await until(async () => (await evaluating()) !== "", 300);
    expect(await evaluating(), stderr).not.toBe("");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    child.kill(sig);
    if (signals === 2) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      child.kill(sig);
    }
    expect(await code, stderr).toBe(130);
    expect(stderr).toBe(`error: interrupted (${sig})\n`);
    expect(
      stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
    ).toEqual([{ error: { code: "interrupted", message: `interrupted (${sig})` } }]);
    // Stopped before nixship exited (within a moment's grace for the kernel to reap it).
    await until(async () => (await evaluating()) === "", 20);
    expect(await evaluating()).toBe("");
    expect((await readdir(flake)).sort()).toEqual(["flake.nix"]);
  });
});
