// Deltas in a deploy over ssh, on a lab of two real hosts: after a rebuild of their
// system (every store path new, the same names), `nixship deploy` computes each (target, base)
// pair once for both hosts, in the background, publishes the deltas in the cache, and a host
// that starts once they are there (a later wave, a later deploy) gets most paths by delta, runs
// the new system and its store verifies it; `--no-delta` fetches whole; a host
// reached over SSM (the stand-in that runs the document's real shell) gets them too; deltas a
// cache writer without the key broke or noted away are published again before the next host
// needs them. The delta tool is a stand-in store path holding Debian's zstd.

import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deltaPathOf, deltaSkipKey, deltaTargetHashPart } from "../src/cache/delta-path.js";
import { narInfoKey } from "../src/cache/layout.js";
import { checkStoredNar, readNarInfo } from "../src/cache/read.js";
import type { NarInfo } from "../src/nix/narinfo.js";
import type { StorePath } from "../src/nix/store-path.js";
import { listAll, readAll } from "../src/store/helpers.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { nixship, run } from "../support/cli.js";
import { buildDeltaTool, rebuildFleet } from "./support/delta-fleet.js";
import { deployOutlastingDeltas } from "./support/deltas-hold.js";
import type { FreshSystems } from "./support/fresh-systems.js";
import {
  type DeployEventLine,
  deployEvents,
  labDeployArgs,
  summaryOf,
} from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";
import { startSsmStandIn } from "./support/ssm-stand-in.js";

const HOSTS = ["ddl1", "ddl2"];
// Each build has store paths of its own (system.nix's nonce) with the same names: a rebuild.
// Its libraries are large enough for a delta to be worth it; its toplevel, etc and kernel not.
const SYSTEM = 'name = "web-v1"; version = "v1"; libraries = { a = 48; b = 48; c = 48; d = 48; };';

let lab: SshLab;
let tool: string;
const flakes: FreshSystems[] = [];

/** A new build of SYSTEM, and every lab host pointed at it. */
async function rebuild(): Promise<void> {
  flakes.push(await rebuildFleet(lab.fleetFile, HOSTS, tool, SYSTEM));
}

function onHost(host: string, command: string) {
  return run("ssh", ["-F", `${lab.info.dir}/ssh_config`, host, command]);
}

/** The narinfos of the delta paths `store` holds. */
async function deltasIn(store: ObjectStore): Promise<NarInfo[]> {
  const deltas: NarInfo[] = [];
  for await (const { key } of listAll(store, "")) {
    if (!key.endsWith(".narinfo")) continue;
    const info = await readNarInfo(store, key.slice(0, -".narinfo".length));
    if (info !== undefined && deltaTargetHashPart(info.storePath) !== undefined) deltas.push(info);
  }
  return deltas;
}

const ofType = (events: DeployEventLine[], type: string): unknown[] =>
  events.filter((e) => e.type === type);

beforeAll(async () => {
  // A stand-in for nixpkgs' zstd: a store path whose bin/zstd is Debian's.
  tool = await buildDeltaTool();
  lab = await startSshLab("ddl", HOSTS.length);
}, 300_000);

afterAll(async () => {
  await lab?.down();
  for (const flake of flakes) await flake.remove();
});

describe("a deploy with deltas", () => {
  it("gives a later wave's host most paths of a rebuilt system by delta, each pair computed once", async () => {
    await rebuild();
    const first = await lab.deploy("--json");
    expect(first.code, first.stderr).toBe(0);
    // Fresh hosts have nothing to be a base: no pair, every path whole.
    expect(ofType(deployEvents(first), "deltas-start")).toEqual([]);

    await rebuild();
    // One host a wave: the first fetches whole while the pairs are computed, the second finds
    // them published.
    const r = await lab.deploy("--json", "--parallel", "1");
    expect(r.code, r.stderr).toBe(0);
    const events = deployEvents(r);
    const [start] = ofType(events, "deltas-start") as { pairs: number; hosts: number }[];
    const [done] = ofType(events, "deltas-done") as {
      published: number;
      existing: number;
      skipped: number;
      failed: number;
    }[];
    // Both hosts run the same system and get the same one: their pairs are one set.
    expect(start).toMatchObject({ hosts: 2 });
    expect(start?.pairs).toBeGreaterThan(2);
    expect(done).toMatchObject({ failed: 0 });
    expect((done?.published ?? 0) + (done?.skipped ?? 0) + (done?.existing ?? 0)).toBe(
      start?.pairs,
    );
    expect(done?.published).toBeGreaterThan(0);

    const outcomes = summaryOf(r);
    const waves = ofType(events, "wave-start") as { hosts: string[] }[];
    expect(waves.map((w) => w.hosts)).toEqual([["ddl1"], ["ddl2"]]);
    for (const host of HOSTS) {
      const outcome = outcomes[host] as {
        status: string;
        delta?: {
          paths: number;
          wholePaths: number;
          failed: number;
          bytes: number;
          narBytes: number;
        };
      };
      expect(outcome.status, host).toBe("activated");
      if (host === "ddl2") {
        expect(outcome.delta?.paths, host).toBeGreaterThan(outcome.delta?.wholePaths ?? 0);
        expect(outcome.delta?.failed, host).toBe(0);
        expect(outcome.delta?.bytes ?? 0, host).toBeLessThan(outcome.delta?.narBytes ?? 0);
      }
      // The host runs the new system, and its store verifies every path of it.
      const current = (await onHost(host, "readlink /run/current-system")).stdout.trim();
      expect(current).toMatch(/-example-web-system-v1$/);
      const verify = await onHost(
        host,
        `nix-store --verify-path $(nix-store -qR ${current}) && echo verified`,
      );
      expect(verify.stdout.trim(), verify.stderr).toBe("verified");
    }
  }, 300_000);

  it("plans what each host fetches with deltas and without, and its record keeps what came by delta", async () => {
    type Fetch = {
      host: string;
      paths: number;
      byDelta: number;
      pending: number;
      withDeltas: number;
      whole: number;
      upperBound: boolean;
    };
    const planOf = async () => {
      const r = await lab.plan("--json");
      expect(r.code, r.stderr).toBe(0);
      const plan = JSON.parse(r.stdout) as { deltas?: { hosts: Fetch[]; pending: number } };
      const byHost = new Map((plan.deltas?.hosts ?? []).map((f) => [f.host, f]));
      return {
        pending: plan.deltas?.pending ?? 0,
        ddl1: byHost.get("ddl1"),
        ddl2: byHost.get("ddl2"),
      };
    };
    await rebuild();
    // The lab's fleet names no `substituter`: planned without --serve-cache, as a deploy
    // without it would run, the hosts' paths come by a copy, whole, and the plan says so.
    const copied = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--json"]);
    expect(copied.code, copied.stderr).toBe(0);
    const copiedPlan = JSON.parse(copied.stdout) as {
      deltas?: { hosts: unknown[]; noDelta: { host: string; reason: string }[] };
    };
    expect(copiedPlan.deltas?.hosts).toEqual([]);
    expect(copiedPlan.deltas?.noDelta).toEqual([
      { host: "ddl1", reason: "copied" },
      { host: "ddl2", reason: "copied" },
    ]);
    // Before the deploy: nothing of the rebuild is in the cache, its deltas not computed.
    const before = await planOf();
    expect(before.pending).toBeGreaterThan(2);
    expect(before.ddl2).toMatchObject({ byDelta: 0, upperBound: true });
    expect(before.ddl2?.pending).toBeGreaterThan(0);
    expect(before.ddl2?.withDeltas).toBe(before.ddl2?.whole);

    // ddl1 fetches whole (nothing was published when it started); its pairs are computed
    // meanwhile.
    const r = await deployOutlastingDeltas(lab, ["ddl1"], "--on", "ddl1");
    expect(r.code, r.stderr).toBe(0);

    // ddl2 makes the same move: its deltas are published now, and it fetches far less with them.
    const after = await planOf();
    expect(after.pending).toBe(0);
    expect(after.ddl2).toMatchObject({ pending: 0, upperBound: false, paths: before.ddl2?.paths });
    expect(after.ddl2?.byDelta).toBeGreaterThan((after.ddl2?.paths ?? 0) / 2);
    expect(after.ddl2?.withDeltas).toBeLessThan(after.ddl2?.whole ?? 0);
    const human = await lab.plan();
    expect(human.stdout).toMatch(
      /^deltas \(bytes each host fetches from the cache, compressed, with the deltas published and without; the transfer column counts the NARs, uncompressed\):$/m,
    );
    expect(human.stdout).toMatch(
      /^ {2}ddl2: \d+ paths, \d+ by delta: .* with deltas, .* without, [\d.]+× less$/m,
    );

    const rest = await lab.deploy("--json", "--on", "ddl2");
    expect(rest.code, rest.stderr).toBe(0);
    const delta = (summaryOf(rest).ddl2 as { delta?: { paths: number } }).delta;
    expect(delta?.paths).toBeGreaterThan(0);
    // ddl2's record keeps what it fetched by delta, for status, the dashboard and /metrics.
    const status = await lab.nixship(["status", "--fleet", lab.fleetFile, "--stored", "--json"]);
    const rows = JSON.parse(status.stdout) as { hosts: { host: string; delta?: unknown }[] };
    expect(rows.hosts.find((h) => h.host === "ddl2")?.delta).toEqual(delta);
  }, 300_000);

  it("fetches every path whole with --no-delta, and says nothing of deltas", async () => {
    await rebuild();
    const r = await lab.deploy("--json", "--no-delta");
    expect(r.code, r.stderr).toBe(0);
    const events = deployEvents(r);
    expect(ofType(events, "deltas-start")).toEqual([]);
    for (const host of HOSTS) {
      const outcome = summaryOf(r)[host] as { status: string; delta?: unknown };
      expect(outcome.status).toBe("activated");
      expect(outcome.delta).toBeUndefined();
    }
  }, 300_000);

  it("sums up what came by delta in the human summary", async () => {
    await rebuild();
    const r = await lab.deploy();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /^deltas: \d+ paths? by delta \(.* fetched for .* of NARs\), \d+ paths? whole/m,
    );
    expect(r.stderr).toMatch(/^ddl1 +activated .*|^ddl1: activated/m);
  }, 300_000);

  it("publishes again the deltas a cache writer without the key broke or noted away, and a host uses them", async () => {
    await rebuild();
    const first = await lab.deploy("--json");
    expect(first.code, first.stderr).toBe(0);
    const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
    const cache = await openStore(doc.cache.url);
    const before = new Set((await deltasIn(cache)).map((d) => d.storePath));
    await cache.close();
    await rebuild();
    // ddl1 fetches whole; its pairs are published meanwhile.
    const r1 = await deployOutlastingDeltas(lab, ["ddl1"], "--on", "ddl1");
    expect(r1.code, r1.stderr).toBe(0);
    const [published] = ofType(deployEvents(r1), "deltas-done") as { published: number }[];
    expect(published?.published).toBeGreaterThan(1);

    // Someone who can write to the cache, without its key: one delta's NAR swapped for
    // garbage, and every other delta deleted and its pair noted "not worth it" by hand.
    const store = await openStore(doc.cache.url);
    try {
      const deltas = (await deltasIn(store)).filter((d) => !before.has(d.storePath));
      expect(deltas.length).toBeGreaterThan(1);
      const [swapped, ...noted] = deltas as [NarInfo, ...NarInfo[]];
      await store.put(swapped.url, randomBytes(swapped.narSize));
      for (const info of noted) {
        const nar = (await readAll(store, info.url))?.toString("latin1") ?? "";
        const target = /\nTarget: (\S+)\n/.exec(nar)?.[1] as StorePath;
        const base = /\nBase: (\S+)\n/.exec(nar)?.[1] as StorePath;
        expect(deltaPathOf(target, base)).toBe(info.storePath);
        await store.delete(narInfoKey(info.storePath));
        await store.put(
          deltaSkipKey(target, base),
          Buffer.from(
            JSON.stringify({
              engine: "zstd-patch",
              level: 19,
              target,
              base,
              deltaBytes: 1,
              targetBytes: 1,
            }),
          ),
        );
      }

      // ddl2 makes ddl1's move while the pairs are computed again: whatever it found broken
      // came whole, and Nix checked what came by delta.
      const r2 = await lab.deploy("--json", "--on", "ddl2");
      expect(r2.code, r2.stderr).toBe(0);
      expect((summaryOf(r2).ddl2 as { status: string }).status).toBe("activated");
      const current = (await onHost("ddl2", "readlink /run/current-system")).stdout.trim();
      const verify = await onHost(
        "ddl2",
        `nix-store --verify-path $(nix-store -qR ${current}) && echo verified`,
      );
      expect(verify.stdout.trim(), verify.stderr).toBe("verified");
      const [done] = ofType(deployEvents(r2), "deltas-done") as {
        published: number;
        replaced: number;
        failed: number;
      }[];
      expect(done).toMatchObject({ failed: 0, replaced: deltas.length, published: deltas.length });
      await checkStoredNar(store, swapped);

      // ddl2 goes back, forgets the new system's paths (its profile's generation and the root of
      // what it realised last), and makes the move again: it applies
      // every delta the plan counts for it, each published again sound.
      const back = await lab.nixship(["rollback", "--fleet", lab.fleetFile, "--on", "ddl2"]);
      expect(back.code, back.stderr).toBe(0);
      const forget = await onHost(
        "ddl2",
        "nix-env -p /nix/var/nix/profiles/system --delete-generations old && rm -f /run/nixship/realised && nix-store --gc >/dev/null 2>&1 && " +
          `! nix-store --check-validity ${current} 2>/dev/null && echo forgotten`,
      );
      expect(forget.stdout.trim(), forget.stderr).toBe("forgotten");
      // The plan counts what the host's store lacks (some of the new closure it may still
      // hold), in its deltas as in its transfer; the host fetches as the plan said.
      const plan = await lab.plan("--json");
      expect(plan.code, plan.stderr).toBe(0);
      const planDoc = JSON.parse(plan.stdout) as {
        hosts: { host: string; transfer: { paths: number } }[];
        deltas?: { hosts: { host: string; paths: number; byDelta: number }[] };
      };
      const planned = planDoc.deltas?.hosts.find((h) => h.host === "ddl2");
      const lacked = planDoc.hosts.find((h) => h.host === "ddl2")?.transfer.paths ?? 0;
      expect(planned?.paths).toBe(lacked);
      expect(planned?.byDelta).toBeGreaterThan(lacked / 2);
      const r3 = await lab.deploy("--json", "--on", "ddl2");
      expect(r3.code, r3.stderr).toBe(0);
      const again = (
        summaryOf(r3).ddl2 as { delta?: { paths: number; wholePaths: number; failed: number } }
      ).delta;
      expect(again).toMatchObject({ failed: 0, paths: planned?.byDelta });
      expect((again?.paths ?? 0) + (again?.wholePaths ?? 0)).toBe(lacked);
    } finally {
      await store.close();
    }
  }, 600_000);

  it("gives a host reached over SSM its paths by delta too", async () => {
    // ddl2 becomes an SSM instance: the stand-in runs the document's shell (DeltaTool and all).
    const labEnv = { NIXSHIP_LAB_DIR: dirname(lab.info.dir) };
    const ssm = await startSsmStandIn({ ddl2: {} }, labEnv);
    const instance = ssm.instances.ddl2;
    try {
      await rebuild();
      const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
        hosts: Record<string, Record<string, unknown>>;
        ssm?: unknown;
      };
      const { sshHost: _, hostKey: __, ...rest } = doc.hosts.ddl2 as Record<string, unknown>;
      // ddl1 makes the same move first over ssh, fetching whole: the pairs are published
      // meanwhile, and ddl2 finds them.
      const prior = await lab.deploy("--json", "--on", "ddl1");
      expect(prior.code, prior.stderr).toBe(0);
      doc.hosts.ddl2 = { ...rest, delivery: "ssm", instanceId: instance };
      doc.ssm = { region: "eu-west-1" };
      await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
      const r = await nixship(
        [
          ...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec")),
          "--on",
          "ddl2",
          "--json",
        ],
        { env: { ...labEnv, ...ssm.env } },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(ssm.sent).toContain("activate");
      const outcome = summaryOf(r).ddl2 as {
        status: string;
        delta?: { paths: number; wholePaths: number; failed: number };
      };
      expect(outcome.status).toBe("activated");
      expect(outcome.delta?.paths, JSON.stringify(outcome)).toBeGreaterThan(
        outcome.delta?.wholePaths ?? 0,
      );
      expect(outcome.delta?.failed).toBe(0);
      // The instance runs the new system, and its store verifies every path of it.
      const summary = deployEvents(r).find((e) => e.type === "summary") as unknown as {
        results: { host: string; desired: string }[];
      };
      const desired = summary.results.find((x) => x.host === "ddl2")?.desired;
      const current = (await onHost("ddl2", "readlink /run/current-system")).stdout.trim();
      expect(current).toBe(desired);
      const verify = await onHost(
        "ddl2",
        `nix-store --verify-path $(nix-store -qR ${current}) && echo verified`,
      );
      expect(verify.stdout.trim(), verify.stderr).toBe("verified");
    } finally {
      await ssm.close();
    }
  }, 300_000);
});
