// Deltas computed in the background, on a lab of three real hosts deployed one wave each: the
// deployer's zstd is slowed (a wrapper that holds every compression until the first wave's host
// is done, or a minute), so the pairs take longer to compute than a host takes to fetch whole.
// The rollout does not wait for them: the first host fetches every path whole, and the last
// one gets most of them by the deltas computed meanwhile, runs its new system, and its store
// verifies it. Then a deploy in one wave after a deploy that recorded a slow link: the wave
// waits for the fast pass, and its hosts get their paths by delta; and after one that recorded
// a fast link, no delta is computed or used.

import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DELTA_APPLY_PACE } from "../src/deploy/delta-pace.js";
import { parseSecretKey } from "../src/nix/keys.js";
import type { RolloutFetchPace } from "../src/status/rollout.js";
import { writeRollout } from "../src/status/rollout-store.js";
import { openStore } from "../src/store/url.js";
import { nixship, run } from "../support/cli.js";
import { buildDeltaTool, rebuildFleet } from "./support/delta-fleet.js";
import type { FreshSystems } from "./support/fresh-systems.js";
import {
  type DeployEventLine,
  deployEvents,
  labDeployArgs,
  summaryOf,
} from "./support/lab-deploy.js";
import { rolloutRecord } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOSTS = ["dbk1", "dbk2", "dbk3"];
// Each build has store paths of its own with the same names: a rebuild, its libraries large
// enough for a delta to be worth it.
const SYSTEM = 'name = "web-v1"; version = "v1"; libraries = { a = 48; b = 48; c = 48; d = 48; };';
/** The longest the wrapper holds a compression: what the old code, computing first, waits. */
const GATE_SECONDS = 60;

let lab: SshLab;
let tool: string;
let slow: string;
const flakes: FreshSystems[] = [];

beforeAll(async () => {
  tool = await buildDeltaTool();
  lab = await startSshLab("dbk", HOSTS.length);
  slow = await mkdtemp(join(tmpdir(), "nixship-slow-zstd-"));
  // The deployer's zstd: its version and decompression as they are, a compression held until
  // the gate file exists (at most GATE_SECONDS).
  await writeFile(
    join(slow, "zstd"),
    `#!/bin/sh
case " $* " in *" --version "* | *" -d "*) exec /usr/bin/zstd "$@" ;; esac
i=0
while [ ! -e ${slow}/gate ] && [ "$i" -lt ${GATE_SECONDS * 10} ]; do sleep 0.1; i=$((i + 1)); done
exec /usr/bin/zstd "$@"
`,
  );
  await chmod(join(slow, "zstd"), 0o755);
}, 300_000);

afterAll(async () => {
  await lab?.down();
  for (const flake of flakes) await flake.remove();
  if (slow !== undefined) await rm(slow, { recursive: true, force: true });
});

function onHost(host: string, command: string) {
  return run("ssh", ["-F", `${lab.info.dir}/ssh_config`, host, command]);
}

/**
 * A rollout record, the newest, that says how fast the hosts fetched: signed with the lab's
 * cache key, as a deploy signs its record (an unsigned pace is not believed).
 */
async function recordPace(id: string, fetchPace: RolloutFetchPace): Promise<void> {
  const store = await openStore(`file://${join(lab.info.dir, "cache")}`);
  const now = new Date().toISOString();
  await writeRollout(
    store,
    rolloutRecord([], {
      id,
      state: "succeeded",
      waves: [],
      fetchPace,
      startedAt: now,
      updatedAt: now,
    }),
    parseSecretKey(await readFile(join(lab.info.dir, "cache.sec"), "utf8")),
  );
  await store.close();
}

describe("deltas slower to compute than a fetch", () => {
  it("does not hold the rollout for them, and a later wave's host uses the ones computed meanwhile", async () => {
    // The hosts run a first build (fresh hosts have no base: no delta), then a rebuild.
    flakes.push(await rebuildFleet(lab.fleetFile, HOSTS, tool, SYSTEM));
    const first = await lab.deploy("--json");
    expect(first.code, first.stderr).toBe(0);
    flakes.push(await rebuildFleet(lab.fleetFile, HOSTS, tool, SYSTEM));

    let gateOpened = false;
    let buffered = "";
    const r = await nixship(
      [
        ...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec")),
        "--parallel",
        "1",
        "--json",
      ],
      {
        env: {
          NIXSHIP_LAB_DIR: dirname(lab.info.dir),
          PATH: `${slow}:${process.env.PATH ?? ""}`,
        },
        // The compressions go on once the first wave's host is done.
        onStdout: (chunk) => {
          buffered += chunk;
          const lines = buffered.split("\n");
          buffered = lines.pop() ?? "";
          for (const line of lines) {
            if (gateOpened || !line.includes('"host-done"')) continue;
            gateOpened = true;
            void writeFile(join(slow, "gate"), "");
          }
        },
      },
    );
    expect(r.code, r.stderr).toBe(0);
    const events = deployEvents(r);
    const waves = events.filter((e) => e.type === "wave-start") as (DeployEventLine & {
      wave: number;
      hosts: string[];
    })[];
    expect(waves.map((w) => w.hosts.length)).toEqual([1, 1, 1]);
    const firstHost = waves[0]?.hosts[0] as string;
    const lastHost = waves[2]?.hosts[0] as string;
    // The rollout started before the pairs were computed...
    const index = (type: string) => events.findIndex((e) => e.type === type);
    expect(index("deltas-start")).toBeGreaterThanOrEqual(0);
    expect(index("wave-start")).toBeLessThan(index("deltas-done"));
    type Outcome = {
      status: string;
      delta?: { paths: number; wholePaths: number; failed: number };
    };
    const outcomes = summaryOf(r) as Record<string, Outcome>;
    // ...so its first host fetched every path whole (no delta was there for it: it was not
    // even given the tool)...
    expect(outcomes[firstHost]?.status).toBe("activated");
    expect(outcomes[firstHost]?.delta?.paths ?? 0).toBe(0);
    // ...and the last got most paths by the deltas computed meanwhile.
    const last = outcomes[lastHost];
    expect(last?.status).toBe("activated");
    expect(last?.delta?.paths, JSON.stringify(last)).toBeGreaterThan(last?.delta?.wholePaths ?? 0);
    expect(last?.delta?.failed).toBe(0);
    for (const host of HOSTS) {
      const current = (await onHost(host, "readlink /run/current-system")).stdout.trim();
      const verify = await onHost(
        host,
        `nix-store --verify-path $(nix-store -qR ${current}) && echo verified`,
      );
      expect(verify.stdout.trim(), verify.stderr).toBe("verified");
    }
  }, 600_000);

  it("waits in a deploy's first wave for the fast pass when the last deploy saw a slow link", async () => {
    flakes.push(await rebuildFleet(lab.fleetFile, HOSTS, tool, SYSTEM));
    // The newest rollout record says the hosts fetched whole at 500 bytes a second (a deploy
    // over a very slow link; the lab's own is loopback).
    // The wave waits as long as its deltas' bytes would take whole at that pace, at most: 500
    // bytes a second makes it minutes for these few hundred KiB, so that the fast pass is done
    // first however loaded the machine; it ends as soon as they are published.
    await recordPace("51070000aa", { whole: { bytes: 200_000_000, seconds: 400_000 } });
    const r = await lab.deploy("--canary", "0", "--parallel", String(HOSTS.length), "--json");
    expect(r.code, r.stderr).toBe(0);
    const events = deployEvents(r);
    const waves = events.filter((e) => e.type === "wave-start");
    expect(waves).toHaveLength(1);
    // The only wave waited for the deltas, judged by the recorded pace...
    const waited = events.find((e) => e.type === "deltas-wait") as
      | (DeployEventLine & { wave: number; bytesPerSecond: number })
      | undefined;
    // (less their rebuilding at the pace hosts rebuild from deltas before any was seen to).
    expect(waited, JSON.stringify(events.map((e) => e.type))).toMatchObject({
      wave: 1,
      bytesPerSecond: 500,
      rebuiltBytesPerSecond: DELTA_APPLY_PACE,
    });
    // ...and every host got most of its paths by delta.
    const outcomes = summaryOf(r) as Record<
      string,
      { status: string; delta?: { paths: number; wholePaths: number; failed: number } }
    >;
    for (const host of HOSTS) {
      const o = outcomes[host];
      expect(o?.status, JSON.stringify(o)).toBe("activated");
      expect(o?.delta?.paths, JSON.stringify(o)).toBeGreaterThan(o?.delta?.wholePaths ?? 0);
      expect(o?.delta?.failed).toBe(0);
    }
  }, 600_000);

  it("computes and uses no delta when the last deploy of these hosts saw them fetch whole fast", async () => {
    flakes.push(await rebuildFleet(lab.fleetFile, HOSTS, tool, SYSTEM));
    await recordPace("fa57000bb1", {
      whole: { bytes: 400_000_000, seconds: 4, hosts: [HOSTS[0] as string, "elsewhere-2"] },
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    // A newer deploy of other hosts, over a slow link, says nothing of these.
    await recordPace("fa57000bb2", {
      whole: { bytes: 80_000_000, seconds: 64, hosts: ["elsewhere-1"] },
    });
    const r = await lab.deploy("--canary", "0", "--parallel", String(HOSTS.length), "--json");
    expect(r.code, r.stderr).toBe(0);
    const events = deployEvents(r);
    expect(events.find((e) => e.type === "deltas-fast-link")).toMatchObject({
      bytesPerSecond: 100_000_000,
    });
    expect(events.filter((e) => e.type === "deltas-start")).toEqual([]);
    const outcomes = summaryOf(r) as Record<string, { status: string; delta?: { paths: number } }>;
    for (const host of HOSTS) {
      expect(outcomes[host]?.status).toBe("activated");
      // Not given the tool: no delta step, every path whole.
      expect(outcomes[host]?.delta, JSON.stringify(outcomes[host])).toBeUndefined();
    }
  }, 600_000);
});
