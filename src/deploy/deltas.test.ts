import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { putSyntheticPath, syntheticPath } from "../../test/support/synthetic-cache.js";
import { generateSecretKey } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { publishPlanDeltas } from "./deltas.js";
import type { DeployEvent } from "./events.js";

let dir: string;
let url: string;
let store: ObjectStore;
const key = generateSecretKey("deploy-deltas-1");
const text = randomBytes(60_000).toString("base64");
const app0 = syntheticPath("app0", "app-1.0");
const app1 = syntheticPath("app1", "app-1.1");
const lib0 = syntheticPath("lib0", "lib-1.0");
const lib1 = syntheticPath("lib1", "lib-1.1");

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-deploy-deltas-"));
  url = `file://${dir}/cache?fsync=false`;
  store = await openStore(url);
  for (const [path, v] of [
    [app0, "a0"],
    [app1, "a1"],
    [lib0, "l0"],
    [lib1, "l1"],
  ] as const) {
    await putSyntheticPath(
      store,
      key,
      path,
      [],
      `${text.slice(0, 40_000)}${v}${text.slice(40_000)}`,
    );
  }
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const planned = {
  hosts: [{ host: "web1", missing: 2, missingNarBytes: 0, pairs: [] }],
  pairs: [
    { target: app1, base: app0 },
    { target: lib1, base: lib0 },
  ],
  unread: [],
};

describe("publishPlanDeltas", () => {
  it("publishes the plan's pairs and tells it as deltas-start, delta-progress and deltas-done", async () => {
    const events: DeployEvent[] = [];
    const tally = await publishPlanDeltas({
      cacheUrl: url,
      key,
      planned,
      emit: (e) => events.push(e),
    });
    expect(tally).toMatchObject({ published: 2, failed: 0 });
    expect(events.map((e) => e.type)).toEqual(["deltas-start", "delta-progress", "deltas-done"]);
    expect(events.at(-1)).toMatchObject({ type: "deltas-done", published: 2 });
  });

  it("tells a pair whose base the cache lacks only in the count, not one by one", async () => {
    const gone = syntheticPath("gone", "app-0.9");
    const events: DeployEvent[] = [];
    const tally = await publishPlanDeltas({
      cacheUrl: url,
      key,
      planned: { ...planned, pairs: [{ target: app1, base: gone }, ...planned.pairs] },
      emit: (e) => events.push(e),
    });
    expect(tally).toMatchObject({ published: 2, failed: 1 });
    expect(events.filter((e) => e.type === "delta-progress" && e.failed !== undefined)).toEqual([]);
  });
});
