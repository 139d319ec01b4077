// Issue 4's agent acceptance on a lab of three hosts: real agents (`nixship agent`) inside the
// hosts' namespaces, following a channel in a directory store, substituting through their own
// loopback cache proxy with the real Nix, and running the real activate.sh. The deployer is
// `nixship deploy --via agent`; hostile releases are written straight into the store.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRelease } from "../src/fleet/release.js";
import {
  channelKey,
  publishRelease,
  readChannel,
  readRelease,
} from "../src/fleet/release-store.js";
import type { StatusRecord } from "../src/fleet/status.js";
import { readStatus } from "../src/fleet/status-store.js";
import { generateSecretKey, parseSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
import { type CliRun, NIXSHIP_BIN, nixship, run } from "./support/cli.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";

const LAB = "ag";
const HOSTS = ["ag1", "ag2", "ag3"];
/** Seconds between an agent's polls (± 10 %). */
const POLL = 2;
let work: string;
let lab: { number: number; dir: string; hosts: { name: string; address: string }[] };
let fleetFile: string;
let cacheKeyFile: string;
let releaseKeyFile: string;
let storeUrl: string;
const agents = new Map<string, ChildProcess>();
const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });

function configFile(host: string): string {
  return join(work, "agents", `${host}.json`);
}

/** The checkout (dist/, node_modules/) the agents run from. */
const REPO = join(dirname(NIXSHIP_BIN), "..", "..");
/**
 * nixship as the hosts see it: a lab host has a private /tmp, where a checkout may live, so
 * the checkout is bind-mounted under the test's directory before the lab's hosts start
 * (they copy the machine's mounts when they start), and the agents run it from there.
 */
let binInHost: string;

/** Starts the agent of `host` inside the host's namespaces, as its service would run. */
function startAgent(host: string): void {
  const child = spawn(
    process.execPath,
    [
      NIXSHIP_BIN,
      "lab",
      "exec",
      host,
      "--",
      process.execPath,
      binInHost,
      "agent",
      "--config",
      configFile(host),
    ],
    { env: { ...process.env, ...env() }, stdio: ["ignore", "ignore", "pipe"], detached: true },
  );
  let log = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    log = (log + d).slice(-20_000);
  });
  child.on("exit", () => agentLogs.set(host, log));
  agents.set(host, child);
}
const agentLogs = new Map<string, string>();

function stopAgent(host: string): void {
  const child = agents.get(host);
  if (child?.pid !== undefined && child.exitCode === null) process.kill(-child.pid, "SIGTERM");
  agents.delete(host);
}

async function setSystems(system: string): Promise<void> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  for (const h of Object.values(doc.hosts)) h.system = `path:${EXAMPLES_DIR}#${system}`;
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
}

function deployViaAgent(...extra: string[]): Promise<CliRun> {
  return nixship([
    "deploy",
    "--fleet",
    fleetFile,
    "--via",
    "agent",
    "--key",
    cacheKeyFile,
    "--release-key",
    releaseKeyFile,
    "--json",
    ...extra,
  ]);
}

async function served(host: string): Promise<string> {
  const address = lab.hosts.find((h) => h.name === host)?.address;
  const r = await run("curl", ["-s", "--max-time", "5", `http://${address}/version`]);
  return r.stdout ? (JSON.parse(r.stdout) as { name: string }).name : "(nothing)";
}

async function record(host: string): Promise<StatusRecord | undefined> {
  const store = await openStore(storeUrl);
  try {
    return await readStatus(store, host);
  } finally {
    await store.close();
  }
}

/** Waits (bounded) until `check` holds for the host's status record. */
async function waitFor(
  host: string,
  check: (r: StatusRecord) => boolean,
  seconds = 60,
): Promise<StatusRecord> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const r = await record(host);
    if (r !== undefined && check(r)) return r;
    if (Date.now() > deadline) {
      throw new Error(
        `${host}: status never matched; last: ${JSON.stringify(r)}\nagent log:\n${agentLogs.get(host) ?? "(running)"}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function summaryOf(r: CliRun) {
  const lines = r.stdout.trim().split("\n").filter(Boolean);
  const events = lines.map((l) => JSON.parse(l) as { type: string; [k: string]: unknown });
  const summary = events.find((e) => e.type === "summary") as
    | { ok: boolean; results: { host: string; outcome: Record<string, unknown> }[] }
    | undefined;
  if (!summary) throw new Error(`no summary; stderr:\n${r.stderr}`);
  return Object.fromEntries(summary.results.map((x) => [x.host, x.outcome]));
}

async function channelRelease() {
  const store = await openStore(storeUrl);
  try {
    const got = await readChannel(store, "production");
    if (got.status !== "found") throw new Error("no channel");
    return parseRelease(got.bytes, "channel");
  } finally {
    await store.close();
  }
}

async function writeChannel(bytes: Uint8Array): Promise<void> {
  const store = await openStore(storeUrl);
  try {
    await store.put(channelKey("production"), bytes);
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  // Not under /tmp: each lab host has a private /tmp, and the agents must see the store.
  await mkdir("/var/tmp", { recursive: true });
  work = await mkdtemp("/var/tmp/nixship-agent-test-");
  const repoInHost = join(work, "repo");
  await mkdir(repoInHost);
  const bound = await run("mount", ["--bind", REPO, repoInHost]);
  expect(bound.code, bound.stderr).toBe(0);
  binInHost = join(repoInHost, relative(REPO, NIXSHIP_BIN));
  const up = await nixship(["lab", "up", "3", "--name", LAB, "--json"], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as typeof lab;
  fleetFile = join(lab.dir, "nixship.json");
  cacheKeyFile = join(lab.dir, "cache.sec");
  storeUrl = `file://${join(lab.dir, "cache")}`;
  releaseKeyFile = join(work, "release.sec");
  const gen = await nixship(["key", "generate", "--name", "ag-release-1", "--out", releaseKeyFile]);
  expect(gen.code, gen.stderr).toBe(0);
  const releasePublic = gen.stdout.trim();
  const cachePublic = (await nixship(["key", "public", cacheKeyFile])).stdout.trim();

  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as {
    hosts: Record<string, { delivery?: string; sshHost?: string }>;
    policy?: Record<string, unknown>;
    [k: string]: unknown;
  };
  for (const h of Object.values(doc.hosts)) {
    h.delivery = "agent";
    delete h.sshHost;
  }
  doc.releases = { channel: "production", publicKeys: [releasePublic], offlineTimeout: 90 };
  doc.policy = { ...(doc.policy ?? {}), canary: 1, parallel: 3, confirmTimeout: 30 };
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));

  await mkdir(join(work, "agents"), { recursive: true });
  for (const host of HOSTS) {
    await writeFile(
      configFile(host),
      JSON.stringify({
        store: storeUrl,
        channel: "production",
        host,
        releaseKeys: [releasePublic],
        cacheKeys: [cachePublic],
        stateDir: join(work, "agents", host),
        pollInterval: POLL,
        jitter: 0.1,
      }),
    );
    startAgent(host);
  }
});

afterAll(async () => {
  for (const host of [...agents.keys()]) stopAgent(host);
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await run("umount", [join(work, "repo")]);
  await rm(work, { recursive: true, force: true });
});

describe("the pull agent on a lab fleet", () => {
  it("1. converges: web-v1 then web-v2 reach every host within 2 polls; deploy exits 0", async () => {
    await setSystems("web-v1");
    const first = await deployViaAgent();
    expect(first.code, first.stderr).toBe(0);
    expect(await Promise.all(HOSTS.map(served))).toEqual(["web-v1", "web-v1", "web-v1"]);

    await setSystems("web-v2");
    const second = await deployViaAgent();
    expect(second.code, second.stderr).toBe(0);
    expect(await Promise.all(HOSTS.map(served))).toEqual(["web-v2", "web-v2", "web-v2"]);
    const outcomes = summaryOf(second);
    for (const host of HOSTS) expect(outcomes[host]).toMatchObject({ status: "activated" });

    // Each host started on its release within two poll intervals of its publication.
    const store = await openStore(storeUrl);
    try {
      for (const host of HOSTS) {
        const r = await record(host);
        expect(r).toMatchObject({ state: "success", mode: "agent", channel: "production" });
        const release = await readRelease(store, "production", r?.seq as number);
        if (release.status !== "found") throw new Error("release file missing");
        const created = Date.parse(parseRelease(release.bytes, "release").release.created);
        const waited = (Date.parse(r?.startedAt as string) - created) / 1000;
        expect(waited, `${host} waited ${waited}s`).toBeLessThanOrEqual(2 * POLL * 1.1);
        expect(r?.current).toBe(r?.desired);
      }
    } finally {
      await store.close();
    }

    // `nixship status` reads the status objects for agent hosts.
    const status = await nixship(["status", "--fleet", fleetFile, "--json"]);
    expect(status.code, status.stderr).toBe(0);
    const rows = (JSON.parse(status.stdout) as { hosts: { host: string; state: string }[] }).hosts;
    expect(rows.map((r) => [r.host, r.state])).toEqual(HOSTS.map((h) => [h, "success"]));
  });

  it("2. gates on the canary: web-broken fails its health check, rolls back, nobody else is released", async () => {
    const before = await channelRelease();
    await setSystems("web-broken");
    const r = await deployViaAgent("--canary", "1");
    expect(r.code).toBe(1);
    const outcomes = summaryOf(r);
    expect(outcomes.ag1).toMatchObject({ status: "failed", rolledBack: true });
    expect(String(outcomes.ag1?.message)).toMatch(/health/);
    expect(outcomes.ag2).toMatchObject({ status: "skipped", reason: "not-started" });
    expect(outcomes.ag3).toMatchObject({ status: "skipped", reason: "not-started" });
    expect(r.stderr + r.stdout).toContain("ag1");
    expect(await Promise.all(HOSTS.map(served))).toEqual(["web-v2", "web-v2", "web-v2"]);
    // The channel names web-v2 again for everyone (a rollback release), so no host,
    // old or new, is told to run the broken system.
    const after = await channelRelease();
    expect(after.release.kind).toBe("rollback");
    expect(after.release.hosts).toEqual(before.release.hosts);
    const failed = await record("ag1");
    expect(failed?.current).toBe(before.release.hosts.ag1?.path);
  });

  it("3. refuses tampered, foreign-signed and replayed releases; hosts keep running", async () => {
    const good = await channelRelease();
    const text = Buffer.from(good.bytes).toString("utf8");
    const expectRefused = async (why: RegExp) => {
      for (const host of HOSTS) {
        const r = await waitFor(host, (s) => s.state === "rejected" && why.test(s.error ?? ""));
        expect(r.current).toBe(good.release.hosts[host]?.path);
      }
      expect(await Promise.all(HOSTS.map(served))).toEqual(["web-v2", "web-v2", "web-v2"]);
    };

    // Tampered: the signed bytes changed after signing (a higher number, to be taken).
    const tampered = text.replace(`"seq":${good.release.seq}`, `"seq":${good.release.seq + 1}`);
    expect(tampered).not.toBe(text);
    await writeChannel(Buffer.from(tampered));
    await expectRefused(/signature/);

    // Signed, but by a key the agents do not trust.
    await writeChannel(good.bytes);
    const foreign = generateSecretKey("someone-else-1");
    const store = await openStore(storeUrl);
    try {
      await publishRelease(store, {
        channel: "production",
        hosts: good.release.hosts,
        kind: "deploy",
        action: "switch",
        health: good.release.health,
        confirmTimeout: 30,
        key: foreign,
      });
    } finally {
      await store.close();
    }
    await expectRefused(/someone-else-1|trust/);

    // A replay of an older, genuinely signed release.
    const storeB = await openStore(storeUrl);
    try {
      const old = await readRelease(storeB, "production", 1);
      if (old.status !== "found") throw new Error("release 1 missing");
      await writeChannel(old.bytes);
    } finally {
      await storeB.close();
    }
    await expectRefused(/older|replay/);
  });

  it("4. recovers from SIGKILL mid-activation: a consistent generation, then the release applied", async () => {
    const store = await openStore(storeUrl);
    const releaseKey = parseSecretKey(await readFile(releaseKeyFile, "utf8"));
    const good = await channelRelease();
    // web-v3 for ag1, with a slow health check to kill the agent in.
    await setSystems("web-v3");
    const b = await nixship(["build", "--fleet", fleetFile, "--on", "ag1", "--json"]);
    expect(b.code, b.stderr).toBe(0);
    const v3 = (JSON.parse(b.stdout) as { hosts: Record<string, string> }).hosts.ag1 as StorePath;
    const push = await nixship(["push", v3, "--to", storeUrl, "--key", cacheKeyFile]);
    expect(push.code, push.stderr).toBe(0);
    let seq: number;
    try {
      const published = await publishRelease(store, {
        channel: "production",
        hosts: { ...good.release.hosts, ag1: { path: v3 } },
        kind: "deploy",
        action: "switch",
        health: { http: [], commands: [{ run: "sleep 6", timeout: 20 }] },
        confirmTimeout: 0,
        key: releaseKey,
      });
      seq = published.release.seq;
    } finally {
      await store.close();
    }
    await waitFor("ag1", (s) => s.seq === seq && s.state === "applying");
    // SIGKILL the agent process itself (its activate.sh child is left running).
    const pids = await run("pgrep", ["-n", "-f", `agent --config ${configFile("ag1")}`]);
    expect(pids.stdout.trim()).toMatch(/^\d+$/);
    process.kill(Number(pids.stdout.trim()), "SIGKILL");
    agents.delete("ag1");
    startAgent("ag1");
    const done = await waitFor("ag1", (s) => s.seq === seq && s.state !== "applying", 90);
    expect(done).toMatchObject({ state: "success", current: v3, desired: v3 });
    expect(await served("ag1")).toBe("web-v3");
    // The profile and the running system agree.
    const status = await nixship(
      [
        "lab",
        "exec",
        "ag1",
        "--",
        "sh",
        "-c",
        "readlink -f /nix/var/nix/profiles/system; readlink -f /run/current-system",
      ],
      { env: env() },
    );
    const [profile, current] = status.stdout.trim().split("\n");
    expect(profile).toBe(v3);
    expect(current).toBe(v3);
  });

  it("5. rollback: a signed rollback release sends the host back to the system it ran before", async () => {
    const before = await channelRelease();
    const v2 = (await record("ag2"))?.current;
    expect(before.release.hosts.ag1?.path).not.toBe(v2);
    // Agent hosts go back by release, not by generation.
    const withTo = await nixship(["rollback", "--fleet", fleetFile, "--on", "ag1", "--to", "1"], {
      env: { NIXSHIP_RELEASE_KEY: releaseKeyFile },
    });
    expect(withTo.code).toBe(2);
    expect(withTo.stderr).toMatch(/--to/);

    const r = await nixship(["rollback", "--fleet", fleetFile, "--on", "ag1", "--json"], {
      env: { NIXSHIP_RELEASE_KEY: releaseKeyFile },
    });
    expect(r.code, r.stderr).toBe(0);
    const rows = (JSON.parse(r.stdout) as { hosts: Record<string, unknown>[] }).hosts;
    expect(rows).toEqual([
      { host: "ag1", status: "rolled-back", path: v2, generation: expect.any(Number) },
    ]);
    expect(await served("ag1")).toBe("web-v2");
    const after = await channelRelease();
    expect(after.release).toMatchObject({ kind: "rollback", seq: before.release.seq + 1 });
    expect(after.release.hosts).toEqual({ ...before.release.hosts, ag1: { path: v2 } });
    expect(await record("ag1")).toMatchObject({ seq: after.release.seq, state: "success" });
    expect(rows[0]?.generation).toBe((await record("ag1"))?.generation);
  });
});
