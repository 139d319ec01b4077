// A directory cache holding two packages in two versions each (synthetic paths whose NARs
// differ by a few bytes: a delta is worth it), and a plan's pairs between them: what
// publishPlanDeltas's tests publish from.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PlanDeltaPairs } from "../../src/fleet/plan-deltas.js";
import { generateSecretKey, type SecretKey } from "../../src/nix/keys.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { openStore } from "../../src/store/url.js";
import { putSyntheticPath, syntheticPath } from "../../support/synthetic-cache.js";

export interface DeltaPlanCache {
  readonly dir: string;
  readonly url: string;
  readonly store: ObjectStore;
  readonly key: SecretKey;
  /** app 1.0 → 1.1 and lib 1.0 → 1.1, for one host. */
  readonly planned: PlanDeltaPairs;
  readonly close: () => Promise<void>;
}

export async function deltaPlanCache(): Promise<DeltaPlanCache> {
  const dir = await mkdtemp(join(tmpdir(), "nixship-deploy-deltas-"));
  const url = `file://${dir}/cache?fsync=false`;
  const store = await openStore(url);
  const key = generateSecretKey("deploy-deltas-1");
  const text = randomBytes(60_000).toString("base64");
  const path = (name: string, v: string) => syntheticPath(v, `${name}-1.${v.at(-1)}`);
  const [app0, app1, lib0, lib1] = [
    path("app", "a0"),
    path("app", "a1"),
    path("lib", "l0"),
    path("lib", "l1"),
  ];
  for (const [p, v] of [
    [app0, "a0"],
    [app1, "a1"],
    [lib0, "l0"],
    [lib1, "l1"],
  ] as const) {
    await putSyntheticPath(store, key, p, [], `${text.slice(0, 40_000)}${v}${text.slice(40_000)}`);
  }
  return {
    dir,
    url,
    store,
    key,
    planned: {
      hosts: [
        {
          host: "web1",
          missing: 2,
          missingNarBytes: 0,
          lacking: [app1, lib1].map((path) => ({ path, narSize: 0 })),
          pairs: [
            { target: app1, base: app0 },
            { target: lib1, base: lib0 },
          ],
        },
      ],
      pairs: [
        { target: app1, base: app0 },
        { target: lib1, base: lib0 },
      ],
      unread: [],
      noDelta: [],
      tools: new Map(),
    },
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
