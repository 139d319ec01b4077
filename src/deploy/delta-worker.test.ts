import { chmod, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type DeltaPlanCache, deltaPlanCache } from "../../test/support/delta-plan-cache.js";
import { INLINE_NAR_BYTES, InlineNarWriter } from "../cache/nar-pool.js";
import type { PlanDeltaPairs } from "../fleet/plan-deltas.js";
import type { StorePath } from "../nix/store-path.js";
import { narWriterFor, startDeltaWorker } from "./delta-worker.js";
import type { DeployEvent } from "./events.js";

let cache: DeltaPlanCache;
let scratch: string;
beforeEach(async () => {
  cache = await deltaPlanCache();
  scratch = await mkdtemp(join(tmpdir(), "nixship-delta-worker-"));
});
afterEach(async () => {
  await cache.close();
  await rm(scratch, { recursive: true, force: true });
});

/** The fixture's plan, each path it lacks 1000 bytes of NAR. */
const sized = (planned: PlanDeltaPairs): PlanDeltaPairs => ({
  ...planned,
  hosts: planned.hosts.map((h) => ({
    ...h,
    lacking: h.lacking.map((p) => ({ ...p, narSize: 1000 })),
  })),
});

/** A `zstd` that answers its version and, asked to compress, hangs: a compute slower than any fetch. */
async function hangingZstd(): Promise<string> {
  const file = join(scratch, "zstd");
  await writeFile(
    file,
    `#!/bin/sh\nif [ "$1" = --version ]; then echo '*** Zstandard CLI (64-bit) v1.5.4 ***'; exit 0; fi\nexec sleep 600\n`,
  );
  await chmod(file, 0o755);
  return file;
}

describe("the deploy's delta worker", () => {
  it("computes every pair in the background and says what each host still waits for", async () => {
    const events: DeployEvent[] = [];
    const worker = startDeltaWorker({
      cacheUrl: cache.url,
      key: cache.key,
      planned: sized(cache.planned),
      emit: (e) => events.push(e),
      tmpDir: scratch,
    });
    // Started, not done: both paths of web1 are pending; a host it plans nothing for, none.
    expect(worker.pendingBytes(["web1"])).toBe(2000);
    expect(worker.pendingBytes(["other"])).toBe(0);
    expect(worker.hasDeltas("web1")).toBe(false);
    await worker.settled(["web1"], 60_000);
    expect(worker.pendingBytes(["web1"])).toBe(0);
    expect(worker.hasDeltas("web1")).toBe(true);
    await worker.firstPass;
    await worker.stop();
    expect(worker.tally()).toMatchObject({ published: 2, failed: 0 });
    expect(events.map((e) => e.type)).toContain("deltas-done");
    // Small deltas (a few bytes changed): nothing to improve.
    expect(events.map((e) => e.type)).not.toContain("deltas-improve");
  });

  it("stops at once when told, its zstd killed and its files removed, telling what was not done", async () => {
    const events: DeployEvent[] = [];
    const worker = startDeltaWorker({
      cacheUrl: cache.url,
      key: cache.key,
      planned: sized(cache.planned),
      emit: (e) => events.push(e),
      zstd: await hangingZstd(),
      tmpDir: scratch,
    });
    // A wave does not wait past its bound for deltas that do not come.
    await worker.settled(["web1"], 300);
    expect(worker.pendingBytes(["web1"])).toBe(2000);
    await worker.stop();
    expect(events.at(-1)).toMatchObject({ type: "deltas-done", published: 0, unfinished: 2 });
    expect((await readdir(scratch)).filter((f) => f.startsWith("nixship-delta-"))).toEqual([]);
    // Over: no host waits for it any more.
    expect(worker.pendingBytes(["web1"])).toBe(0);
  });

  it("stops by its own deadline", async () => {
    const events: DeployEvent[] = [];
    const worker = startDeltaWorker({
      cacheUrl: cache.url,
      key: cache.key,
      planned: sized(cache.planned),
      emit: (e) => events.push(e),
      zstd: await hangingZstd(),
      tmpDir: scratch,
      deadlineMs: 500,
    });
    await worker.firstPass;
    expect(events.at(-1)).toMatchObject({ type: "deltas-done", unfinished: 2 });
    await worker.stop();
  });
});

describe("narWriterFor", () => {
  const held = (...sizes: number[]) =>
    new Map(
      sizes.map((narSize, i) => [`/nix/store/${"a".repeat(31)}${i}-p` as StorePath, { narSize }]),
    );

  it("dumps on this thread up to INLINE_NAR_BYTES in all, on worker threads past them", async () => {
    const small = narWriterFor(held(INLINE_NAR_BYTES / 2, INLINE_NAR_BYTES / 2));
    const large = narWriterFor(held(INLINE_NAR_BYTES / 2, INLINE_NAR_BYTES / 2 + 1));
    const tree = await mkdtemp(join(tmpdir(), "nixship-nar-writer-"));
    try {
      expect(small).toBeInstanceOf(InlineNarWriter);
      expect(large).not.toBeInstanceOf(InlineNarWriter);
      // The worker threads start with the first path, and dump it as the main thread would.
      await writeFile(join(tree, "file"), "contents\n");
      const job = { path: join(tree, "file"), level: undefined, label: "file" } as const;
      const onThread = await small.write({ ...job, out: join(tree, "a.nar") });
      const onWorker = await large.write({ ...job, out: join(tree, "b.nar") });
      expect(onWorker.nar).toEqual(onThread.nar);
    } finally {
      await small.close();
      await large.close();
      await rm(tree, { recursive: true, force: true });
    }
  });
});
