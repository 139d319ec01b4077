// `nixship nar restore` interrupted while its input stalls halfway (a NAR piped from a slow
// source): it stops at once, exits 130 and leaves nothing under DIR or beside it. Run with the
// built CLI and a real NAR from `nix-store --dump`.
import { execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN } from "../support/cli.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-nar-interrupt-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("nar restore, interrupted", () => {
  it("stops while its input stalls, exits 130, and leaves nothing behind", async () => {
    const tree = join(work, "tree");
    await mkdir(tree);
    await writeFile(join(tree, "big"), Buffer.alloc(4 * 1024 * 1024, 7));
    const nar = execFileSync("nix-store", ["--dump", tree], { maxBuffer: 16 * 1024 * 1024 });
    const out = join(work, "out");
    await mkdir(out);
    const child = spawn(process.execPath, [NIXSHIP_BIN, "nar", "restore", join(out, "restored")], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const code = new Promise<number | null>((resolve) => child.on("close", resolve));
    // What the restore has not read yet when it is interrupted meets a closed pipe (EPIPE).
    child.stdin.on("error", () => {});
    // Half the NAR, then nothing more: the restore has begun its tree beside DIR.
    child.stdin.write(nar.subarray(0, nar.length / 2));
    for (let i = 0; i < 300 && (await readdir(out)).length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await readdir(out)).toHaveLength(1);
    child.kill("SIGINT");
    expect(await code, stderr).toBe(130);
    expect(stderr).toContain("nar restore: interrupted (SIGINT); nothing was left half done");
    expect(await readdir(out)).toEqual([]);
    child.stdin.destroy();
  });
});
