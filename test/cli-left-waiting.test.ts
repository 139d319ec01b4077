// A command left waiting on an event nothing can send any more (the bug fetch --import had: a
// write waiting for 'drain' from a stream already closed) empties Node's event loop, and Node
// exits 0 with the work cut short. The executable fails instead, and says so. The stall is
// made here by a preload that leaves every lstat unanswered (`nar dump` calls it first).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run } from "../support/cli.js";

let work: string;
let preload: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-left-waiting-"));
  preload = join(work, "unanswered-lstat.mjs");
  await writeFile(
    preload,
    `import fs from "node:fs/promises";
import { syncBuiltinESMExports } from "node:module";
fs.lstat = () => new Promise(() => {});
syncBuiltinESMExports();
`,
  );
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

  it("leaves a command that ends as it should alone", async () => {
    const ran = await run(process.execPath, [NIXSHIP_BIN, "nar", "dump", preload]);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).toBe("");
    expect(ran.stdout).toContain("nix-archive-1");
  });
});
