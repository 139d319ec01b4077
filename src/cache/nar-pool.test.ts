// NarPool when a worker thread exits while idle (a real exit: terminate(), on a worker this
// test takes hold of through a wrapped Worker class, since the pool keeps its own). A job
// must never be posted to a worker that is gone: it would wait for good.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Worker as WorkerType } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

const started: WorkerType[] = [];
vi.mock("node:worker_threads", async (original) => {
  const threads = await original<typeof import("node:worker_threads")>();
  class Kept extends threads.Worker {
    constructor(...args: ConstructorParameters<typeof threads.Worker>) {
      super(...args);
      started.push(this);
    }
  }
  return { ...threads, Worker: Kept };
});

const { NarPool } = await import("./nar-pool.js");

let work: string;
let tree: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-nar-pool-"));
  tree = join(work, "file");
  await writeFile(tree, "a small file\n");
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("NarPool, a worker thread gone while idle", () => {
  it("hands later jobs to the workers still running", async () => {
    started.length = 0;
    const pool = new NarPool(2);
    try {
      await started[0]?.terminate();
      const outs = [1, 2, 3].map((i) => join(work, `two-${i}.nar`));
      const digests = await Promise.all(
        outs.map((out) => pool.write({ path: tree, out, level: undefined, label: "x" })),
      );
      expect(digests).toHaveLength(3);
    } finally {
      await pool.close();
    }
  }, 20_000);

  it("fails a later job at once when none is left", async () => {
    started.length = 0;
    const pool = new NarPool(1);
    try {
      await started[0]?.terminate();
      await expect(
        pool.write({ path: tree, out: join(work, "none.nar"), level: undefined, label: "x" }),
      ).rejects.toThrow(/every NAR worker thread exited/);
    } finally {
      await pool.close();
    }
  }, 20_000);
});
