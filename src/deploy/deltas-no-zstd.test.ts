// A file of its own: the zstd check is made once per process, and must not have been made.
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type DeltaPlanCache, deltaPlanCache } from "../../test/support/delta-plan-cache.js";
import { publishPlanDeltas } from "./deltas.js";
import type { DeployEvent } from "./events.js";

let cache: DeltaPlanCache;
beforeEach(async () => {
  cache = await deltaPlanCache();
});
afterEach(async () => {
  await cache.close();
});

describe("publishPlanDeltas on a deployer without zstd", () => {
  it("goes on without deltas where the deployer has no zstd, saying why", async () => {
    const path = process.env.PATH;
    process.env.PATH = join(cache.dir, "no-such-bin");
    const events: DeployEvent[] = [];
    try {
      const tally = await publishPlanDeltas({
        cacheUrl: cache.url,
        key: cache.key,
        planned: cache.planned,
        emit: (e) => events.push(e),
      });
      expect(tally).toBeUndefined();
    } finally {
      process.env.PATH = path;
    }
    expect(events.at(-1)).toMatchObject({
      type: "deltas-done",
      published: 0,
      failed: 2,
      error: expect.stringMatching(/zstd/),
    });
    expect((await cache.store.list("delta/")).objects).toEqual([]);
  });
});
