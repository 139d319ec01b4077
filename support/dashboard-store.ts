// A fleet and its cache store as a dashboard reads them, made without hosts: ssm and agent
// hosts' status records, a channel's releases, and a rollout record; and `nixship dashboard`
// started as a user starts it. Shared by the dashboard's tests and bench:dashboard.
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import { publishRelease } from "../src/release/release-store.js";
import type { RolloutRecord } from "../src/status/rollout.js";
import { writeRollout } from "../src/status/rollout-store.js";
import { type StatusRecord, statusRecord } from "../src/status/status.js";
import { writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { mapLimit } from "../src/util/pool.js";

export const SYSTEM_V1 = "/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1";
export const SYSTEM_V2 = "/nix/store/0v2bpy0w6b8c6dwh4l8r1q4k0ypx9z2a-example-web-system-v2";
export const SYSTEM_HAND = "/nix/store/1z0f3mn7yqg3c7n0a2g0q0rr5d0yf3x4-hand-made-system";

/**
 * The fleet's cache key (one a process), which signs the rollout records written here as a
 * deploy signs its own: views believe only records cache.publicKeys signed.
 */
export const DASHBOARD_CACHE_KEY = generateSecretKey("dash-cache-1");

export interface DashboardFleet {
  readonly fleetFile: string;
  readonly releaseKey: ReturnType<typeof generateSecretKey>;
}

/** A fleet file of `ssm` ssm hosts (s0…) and `agent` agent hosts (a0…), tagged by parity. */
export async function writeDashboardFleet(
  dir: string,
  storeUrl: string,
  counts: { readonly ssm: number; readonly agent: number },
): Promise<DashboardFleet> {
  const releaseKey = generateSecretKey("dash-release-1");
  const hosts: Record<string, unknown> = {};
  for (let i = 0; i < counts.ssm; i++) {
    hosts[`s${i}`] = {
      delivery: "ssm",
      // One instance a host: the fleet refuses two hosts on one.
      instanceId: `i-${i.toString(16).padStart(17, "0")}`,
      system: SYSTEM_V2,
      tags: [i % 2 === 0 ? "web" : "db"],
    };
  }
  for (let i = 0; i < counts.agent; i++) {
    hosts[`a${i}`] = { delivery: "agent", system: SYSTEM_V2, tags: ["edge"] };
  }
  const fleetFile = join(dir, "nixship.json");
  await writeFile(
    fleetFile,
    JSON.stringify({
      cache: { url: storeUrl, publicKeys: [formatPublicKey(publicKeyOf(DASHBOARD_CACHE_KEY))] },
      releases: { channel: "prod", publicKeys: [formatPublicKey(publicKeyOf(releaseKey))] },
      hosts,
    }),
  );
  return { fleetFile, releaseKey };
}

export function hostRecord(
  host: string,
  mode: StatusRecord["mode"],
  fields: Partial<StatusRecord> = {},
): StatusRecord {
  const at = new Date().toISOString();
  return {
    ...statusRecord({
      host,
      mode,
      release: null,
      desired: SYSTEM_V2,
      system: { current: SYSTEM_V2, generation: 2 },
      previous: SYSTEM_V1,
      what: { state: "success", phase: null, error: null, rolledBack: null },
      startedAt: at,
      updatedAt: at,
    }),
    ...fields,
  };
}

/** Every ssm host's record (success on v2) written at once. */
export async function writeSsmRecords(store: ObjectStore, count: number): Promise<void> {
  await mapLimit(
    Array.from({ length: count }, (_, i) => i),
    32,
    (i) => writeStatus(store, hostRecord(`s${i}`, "ssm")),
  );
}

/** A release of channel `prod` naming the agent hosts. */
export async function publishAgentRelease(
  store: ObjectStore,
  fleet: DashboardFleet,
  agents: number,
): Promise<number> {
  const hosts = Object.fromEntries(
    Array.from({ length: agents }, (_, i) => [`a${i}`, { path: SYSTEM_V2 }]),
  );
  const signed = await publishRelease(store, {
    channel: "prod",
    hosts: hosts as never,
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key: fleet.releaseKey,
  });
  return signed.release.seq;
}

/** A finished rollout over the first hosts: a canary wave, then the rest, signed. */
export async function writeRolloutRecord(
  store: ObjectStore,
  hosts: readonly string[],
  fields: Partial<RolloutRecord> = {},
): Promise<RolloutRecord> {
  const at = new Date();
  const entry = (host: string) => ({
    host,
    state: "confirmed" as const,
    phase: null,
    system: SYSTEM_V2,
    message: null,
  });
  const record: RolloutRecord = {
    version: 1,
    id: "0123456789ab",
    mode: "ssm",
    action: "switch",
    state: "succeeded",
    stopped: null,
    waves: [
      { index: 1, kind: "canary", hosts: hosts.slice(0, 1).map(entry) },
      { index: 2, kind: "main", hosts: hosts.slice(1).map(entry) },
    ],
    startedAt: at.toISOString(),
    updatedAt: at.toISOString(),
    ...fields,
  };
  await writeRollout(store, record, DASHBOARD_CACHE_KEY);
  return record;
}

/**
 * Starts `nixship dashboard` (the built CLI `bin`) on a free loopback port and resolves once it
 * says where it listens (within 60 s).
 */
export async function startDashboardProcess(
  bin: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ readonly child: ChildProcess; readonly url: string }> {
  const child = spawn(process.execPath, [bin, "dashboard", "--listen", "127.0.0.1:0", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  const url = await new Promise<string>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`the dashboard did not say where it listens within 60 s: ${err}`));
    }, 60_000);
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /listening on (\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the dashboard exited ${code}: ${err}`));
    });
  });
  return { child, url };
}
