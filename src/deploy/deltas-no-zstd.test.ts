// A file of its own: the zstd check is made once per process, and must not have been made.
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

describe("publishPlanDeltas on a deployer without zstd", () => {
  it("goes on without deltas where the deployer has no zstd, saying why", async () => {
    const path = process.env.PATH;
    process.env.PATH = join(dir, "no-such-bin");
    const events: DeployEvent[] = [];
    try {
      const tally = await publishPlanDeltas({
        cacheUrl: url,
        key,
        planned,
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
    expect((await store.list("delta/")).objects).toEqual([]);
  });
});
