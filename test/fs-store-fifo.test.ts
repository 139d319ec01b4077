// A directory store shared with someone who can write it: a FIFO put where an object is read
// (gc/lock.json, a channel, a pause answer) is no object, and a read of it returns at once. Its
// open blocked until a writer came, and nothing stopped a deploy stuck there (audit L).
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsStore } from "../src/store/fs-store.js";

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-fifo-"));
  await mkdir(join(work, "gc"));
  const made = spawnSync("mkfifo", [join(work, "gc", "lock.json")]);
  if (made.status !== 0) throw new Error(`mkfifo: ${made.stderr}`);
});

afterAll(() => rm(work, { recursive: true, force: true }));

describe("a FIFO in a directory store", () => {
  it("reads as no object, at once", async () => {
    const store = new FsStore(work);
    const read = store.get("gc/lock.json");
    const waited = new Promise((resolve) => setTimeout(() => resolve("still waiting"), 5000));
    expect(await Promise.race([read, waited])).toBeUndefined();
    await store.close();
  });
});
