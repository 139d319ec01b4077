// A secret key file is written whole or not at all: a write that fails (a full disk, which the
// test stands in for, as no real part here can fill one on demand) leaves neither the key nor
// its temporary file, which would hold part of the key.
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { formatSecretKey, generateSecretKey } from "../nix/keys.js";

const failing = { write: false };

vi.mock("node:fs/promises", async (original) =>
  (await import("../../support/full-disk.js")).fullDisk(
    await original(),
    () => failing.write,
    // Half the key reaches the disk, then the disk is full.
    (data) => data.slice(0, data.length / 2),
  ),
);

const { writeSecretKeyFile } = await import("./key-file.js");

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-key-file-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("writeSecretKeyFile", () => {
  it("writes the key, owner-only, and nothing beside it", async () => {
    failing.write = false;
    const out = join(work, "ok.sec");
    await writeSecretKeyFile(out, generateSecretKey("fleet-1"), false);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect(await readdir(work)).toEqual(["ok.sec"]);
  });

  it("leaves no part of the key behind when the write fails", async () => {
    failing.write = true;
    const out = join(work, "full.sec");
    await expect(writeSecretKeyFile(out, generateSecretKey("fleet-1"), false)).rejects.toThrow(
      /ENOSPC/,
    );
    expect(await readdir(work)).toEqual(["ok.sec"]);
  });

  it("interrupted while it writes: ends the write, then fails as interrupted, no temporary file left", async () => {
    failing.write = false;
    const out = join(work, "cut.sec");
    const key = generateSecretKey("fleet-1");
    const writing = writeSecretKeyFile(out, key, false);
    // (As a signal's event on this process: no real signal is sent.)
    process.emit("SIGINT", "SIGINT");
    await expect(writing).rejects.toMatchObject({
      code: "interrupted",
      message: `interrupted (SIGINT) as ${out} was written`,
    });
    expect((await readdir(work)).sort()).toEqual(["cut.sec", "ok.sec"]);
    expect(await readFile(out, "utf8")).toBe(formatSecretKey(key));
    expect(process.listenerCount("SIGINT")).toBe(0);
  });
});
