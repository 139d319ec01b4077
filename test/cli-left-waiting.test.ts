// A command left waiting on an event nothing can send any more (the bug fetch --import had: a
// write waiting for 'drain' from a stream already closed) empties Node's event loop, and Node
// exits 0 with the work cut short. The executable fails instead, and says so. The stall is
// made here by a preload that leaves every lstat unanswered (`nar dump` calls it first).
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run } from "../support/cli.js";

let work: string;
let preload: string;
let unansweredListing: string;

/** A preload that leaves every call of these fs/promises functions unanswered. */
async function unanswered(file: string, names: readonly string[]): Promise<string> {
  const path = join(work, file);
  await writeFile(
    path,
    `import fs from "node:fs/promises";
import { syncBuiltinESMExports } from "node:module";
${names.map((n) => `fs.${n} = () => new Promise(() => {});`).join("\n")}
syncBuiltinESMExports();
`,
  );
  return path;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-left-waiting-"));
  preload = await unanswered("unanswered-lstat.mjs", ["lstat"]);
  unansweredListing = await unanswered("unanswered-listing.mjs", ["readdir", "opendir"]);
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("a command left waiting on work that can no longer end", () => {
  it("fails with exit 1 and says it is a bug, never exit 0 with nothing said", async () => {
    const ran = await run(process.execPath, [
      "--import",
      preload,
      NIXSHIP_BIN,
      "nar",
      "dump",
      work,
    ]);
    expect(ran.code, ran.stderr).toBe(1);
    expect(ran.stderr).toMatch(/the command stopped before it finished/);
    expect(ran.stderr).toMatch(/this is a bug in nixship/);
    expect(ran.stdout).toBe("");
  });

  it("under --json, says it on stdout too, as the command's error object", async () => {
    // A directory cache, whose listing (gc's first walk) is left unanswered.
    const cache = join(work, "cache");
    await mkdir(cache);
    await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
    const ran = await run(process.execPath, [
      "--import",
      unansweredListing,
      NIXSHIP_BIN,
      "cache",
      "gc",
      "--cache",
      `file://${cache}`,
      "--dry-run",
      "--json",
    ]);
    expect(ran.code, ran.stderr).toBe(1);
    expect(JSON.parse(ran.stdout)).toEqual({
      error: {
        code: "internal",
        message:
          "the command stopped before it finished: it was left waiting on work that can no longer end",
        hint: "this is a bug in nixship; please report it with the command you ran",
      },
    });
    expect(ran.stderr).toMatch(/the command stopped before it finished/);
  });

  it("leaves a command that ends as it should alone", async () => {
    const ran = await run(process.execPath, [NIXSHIP_BIN, "nar", "dump", preload]);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).toBe("");
    expect(ran.stdout).toContain("nix-archive-1");
  });
});
