import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { FUTURE_SKEW, firstFutureRollout } from "./future-rollouts.js";
import { rolloutKey } from "./rollout.js";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-future-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const NOW = Date.parse("2026-11-28T12:00:00.000Z");

describe("firstFutureRollout", () => {
  it("names a record dated past the skew, and passes over keys that are no record's", async () => {
    await store.put("status/rollouts/!not-a-record", Buffer.from("x"));
    await store.put("status/rollouts/-also-not", Buffer.from("x"));
    await store.put(rolloutKey(new Date(NOW - 60_000), "aaaaaaaaaaaa"), Buffer.from("{}"));
    expect(await firstFutureRollout(store, NOW)).toBeUndefined();
    const ahead = rolloutKey(new Date(NOW + FUTURE_SKEW + 60_000), "ffffffffffff");
    await store.put(ahead, Buffer.from("{}"));
    expect(await firstFutureRollout(store, NOW)).toEqual({
      key: ahead,
      startedAt: new Date(NOW + FUTURE_SKEW + 60_000).toISOString(),
    });
  });
});
