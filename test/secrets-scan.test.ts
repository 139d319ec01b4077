// The secrets tests' scan of the Nix store finds a plaintext in a store path made during the
// test: the scan that says "no leak" is one that would have seen one.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { run } from "../support/cli.js";
import { freshPlaintext, storeFilesHolding } from "./support/secrets-scan.js";

const STARTED = new Date();
let dir: string | undefined;

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("storeFilesHolding", () => {
  it("finds a plaintext in a store path made since the test started, and nothing else", async () => {
    const secret = freshPlaintext("scan-check");
    const other = freshPlaintext("scan-check-other");
    dir = await mkdtemp(join(tmpdir(), "nixship-scan-"));
    const file = join(dir, "leaked.txt");
    await writeFile(file, `before ${secret} after\n`);
    const added = await run("nix-store", ["--add", file]);
    expect(added.code, added.stderr).toBe(0);
    const path = added.stdout.trim();
    expect(await storeFilesHolding([other, secret], STARTED)).toEqual([path]);
    expect(await storeFilesHolding([other], STARTED)).toEqual([]);
  });
});
