// `cache gc` and a host's own status record that does not read, on a small synthetic cache in a
// directory store (no lab): an agent host writes its record itself, so one that writes a
// malformed one ("startedAt": "yesterday") must not stop every collection. The collection
// completes, keeps every system that host could run (its entry in each release of the history,
// the systems the rollouts gave it, and what its earlier records name), names the host in its
// report (text and --json) with why, and collects the rest.
import { mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { publishRelease } from "../src/release/release-store.js";
import { writeRollout } from "../src/status/rollout-store.js";
import {
  formatStatusRecord,
  hostStatusKey,
  progressKey,
  type StatusRecord,
  statusRecord,
} from "../src/status/status.js";
import { writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { nixship } from "../support/cli.js";
import { allKeys, putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

let work: string;
const cacheKey = generateSecretKey("gc-unread-cache-1");
const releaseKey = generateSecretKey("gc-unread-release-1");

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-gc-unread-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const AGENT = "edge1";
/** edge1's entry in releases 1, 2 and 3. */
const EDGE_1 = syntheticPath("edge-1", "nixos-system-edge1-1");
const EDGE_2 = syntheticPath("edge-2", "nixos-system-edge1-2");
const EDGE_3 = syntheticPath("edge-3", "nixos-system-edge1-3");
/** What edge1 ran before the agent took it over (its record on release 2 names it). */
const EDGE_BEFORE = syntheticPath("edge-before", "nixos-system-edge1-0");
/** The nixship package edge1's agent runs (its record on release 2 names it). */
const AGENT_PACKAGE = syntheticPath("agent-package", "nixship-0.1.0");
/** What a push deploy gave edge1 (a rollout record names it). */
const EDGE_PUSHED = syntheticPath("edge-pushed", "nixos-system-edge1-pushed");
/** web1's entry in releases 1, 2 and 3: it runs the newest; the older ones are garbage. */
const WEB = [1, 2, 3].map((i) => syntheticPath(`web-${i}`, `nixos-system-web1-${i}`));
const JUNK = syntheticPath("junk", "hello-2.12");

const KEPT_FOR_EDGE = [EDGE_1, EDGE_2, EDGE_3, EDGE_BEFORE, AGENT_PACKAGE, EDGE_PUSHED].sort();

function agentRecord(seq: number, fields: Partial<StatusRecord>): StatusRecord {
  return statusRecord({
    host: AGENT,
    mode: "agent",
    release: { channel: "prod", seq },
    desired: fields.desired ?? null,
    system: { current: fields.current ?? null, generation: 2 },
    previous: fields.previous ?? null,
    ...(fields.agent ? { agent: fields.agent } : {}),
    what: { state: fields.state ?? "success", phase: null, error: null, rolledBack: null },
    startedAt: "2026-11-25T10:00:00.000Z",
    updatedAt: "2026-11-25T10:00:05.000Z",
  });
}

/**
 * A cache with three releases of channel prod naming edge1 and web1; edge1 confirmed release 2
 * (its marker holds that record) and is applying release 3, web1 runs release 3's system; a push
 * deploy's rollout record names edge1; and an unrooted path. All two days old.
 */
async function cache(name: string): Promise<{ url: string; store: ObjectStore }> {
  const dir = join(work, name);
  const url = `file://${dir}`;
  const store = await openStore(url);
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
  for (const p of [...KEPT_FOR_EDGE, ...WEB, JUNK]) await putSyntheticPath(store, cacheKey, p, []);
  const edge = [EDGE_1, EDGE_2, EDGE_3];
  for (const i of [0, 1, 2]) {
    await publishRelease(store, {
      channel: "prod",
      hosts: {
        [AGENT]: { path: edge[i] as StorePath },
        web1: { path: WEB[i] as StorePath },
      },
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [] },
      confirmTimeout: 30,
      key: releaseKey,
    });
  }
  await writeStatus(
    store,
    agentRecord(2, {
      desired: EDGE_2,
      current: EDGE_2,
      previous: EDGE_BEFORE,
      agent: AGENT_PACKAGE,
    }),
  );
  await writeStatus(store, { ...agentRecord(3, { current: WEB[2] }), host: "web1" });
  const at = new Date(Date.now() - 3 * 86400_000).toISOString();
  await writeRollout(store, {
    version: 1,
    id: "0123456789ab",
    mode: "ssh",
    action: "switch",
    state: "succeeded",
    stopped: null,
    waves: [
      {
        index: 1,
        kind: "main",
        hosts: [
          { host: AGENT, state: "confirmed", phase: null, system: EDGE_PUSHED, message: null },
        ],
      },
    ],
    startedAt: at,
    updatedAt: at,
  });
  const old = new Date(Date.now() - 2 * 86400_000);
  for (const k of await allKeys(store)) await utimes(join(dir, k), old, old);
  return { url, store };
}

/** edge1's own record, as a broken agent might write it: `startedAt` is not a time. */
function malformedRecord(): Uint8Array {
  const record = agentRecord(3, { desired: EDGE_3, current: EDGE_2, state: "applying" });
  const value = JSON.parse(Buffer.from(formatStatusRecord(record)).toString()) as object;
  return Buffer.from(`${JSON.stringify({ ...value, startedAt: "yesterday" })}\n`);
}

interface Report {
  readonly deletedPaths: { storePath: string }[];
  readonly unreadRecords: { host: string; problem: string; kept: string[] }[];
  readonly skippedRoots: unknown[];
}

describe("cache gc and an agent host's malformed record", () => {
  it("completes, keeps every system the host could run, names it (text and --json), and collects the rest", async () => {
    const { url, store } = await cache("malformed-agent");
    try {
      const bad = malformedRecord();
      // Its record and the marker it wrote with it on release 3.
      await store.put(hostStatusKey(AGENT), bad);
      await store.put(progressKey("prod", 3, AGENT, "applying"), bad);
      const gc = (...extra: string[]) =>
        nixship(["cache", "gc", "--cache", url, "--grace", "0", "--keep-releases", "1", ...extra]);

      const dry = await gc("--dry-run");
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stderr).toContain(
        `host ${AGENT}: its record does not read, so what its releases, rollouts and earlier records name is kept (6 paths): the status record status/hosts/${AGENT}.json:`,
      );
      expect(dry.stderr).toContain("startedAt");

      const r = await gc("--json");
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as Report;
      expect(report.unreadRecords).toEqual([
        {
          host: AGENT,
          problem: expect.stringMatching(
            new RegExp(`^the status record status/hosts/${AGENT}\\.json: .*startedAt`),
          ),
          kept: KEPT_FOR_EDGE,
        },
      ]);
      expect(report.skippedRoots).toEqual([]);
      const deleted = report.deletedPaths.map((p) => p.storePath).sort();
      expect(deleted).toEqual([JUNK, WEB[0], WEB[1]].sort());
      const left = await allKeys(store);
      for (const p of KEPT_FOR_EDGE) {
        expect(left).toContain(
          `${p.slice("/nix/store/".length, "/nix/store/".length + 32)}.narinfo`,
        );
      }
    } finally {
      await store.close();
    }
  });
});
