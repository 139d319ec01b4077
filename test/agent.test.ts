// The pull agent on a lab of three hosts started with `lab up --agents`: real
// agents (`nixship agent`) inside the hosts' namespaces, following a channel in a directory
// store, substituting through their own loopback cache proxy with the real Nix, and running the
// real activate.sh. The deployer is `nixship deploy --via agent`; hostile releases are written
// straight into the store. Test 6 is about liveness.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { takeGcLock } from "../src/cache/gc-lease.js";
import { generateSecretKey, parseSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { parseRelease } from "../src/release/release-parse.js";
import { channelKey, publishRelease, readRelease } from "../src/release/release-store.js";
import { judgeReport } from "../src/status/report-signature.js";
import { progressKey } from "../src/status/status.js";
import { readAll } from "../src/store/helpers.js";
import { openStore } from "../src/store/url.js";
import { NIXSHIP_BIN, nixship } from "../support/cli.js";
import {
  type AgentLab,
  agentLog,
  agentPid,
  CHANNEL,
  channelRelease as channelReleaseOf,
  deployViaAgent as deployOn,
  labAgents,
  record as recordOf,
  served as servedOn,
  setSystems as setSystemsOf,
  startAgentLab,
  summaryOf,
  waitFor as waitForOn,
  withStore,
} from "./support/agent-lab.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { freshSystems } from "./support/fresh-systems.js";

const HOSTS = ["ag1", "ag2", "ag3"];
/** Seconds between an agent's polls (± 10 %). */
const POLL = 2;
/** Polls between two heartbeats: a heartbeat at least every ceil(1 × 2 × 1.1) = 3 s. */
const HEARTBEAT_EVERY = 1;
let lab: AgentLab;
let fleetFile: string;
let cacheKeyFile: string;
let releaseKeyFile: string;
let storeUrl: string;

beforeAll(async () => {
  lab = await startAgentLab("ag", {
    hosts: HOSTS.length,
    releases: { offlineTimeout: 90 },
    policy: { canary: 1, parallel: 3, confirmTimeout: 30 },
    agentConfig: { pollInterval: POLL, heartbeatEvery: HEARTBEAT_EVERY },
  });
  ({ fleetFile, cacheKeyFile, releaseKeyFile, storeUrl } = lab);
});

afterAll(async () => {
  await lab?.down();
});

const setSystems = (system: string) => setSystemsOf(lab, system);
const deployViaAgent = (...extra: string[]) => deployOn(lab, ...extra);
const served = (host: string) => servedOn(lab, host);
const record = (host: string) => recordOf(lab, host);
const waitFor = (host: string, check: Parameters<typeof waitForOn>[2], seconds?: number) =>
  waitForOn(lab, host, check, seconds);
const channelRelease = () => channelReleaseOf(lab);
const writeChannel = (bytes: Uint8Array) =>
  withStore(lab, (store) => store.put(channelKey(CHANNEL), bytes));

/** `system` built for `host` as the fleet file then names it, and pushed to the lab's cache. */
async function builtFor(host: string, system: string): Promise<StorePath> {
  await setSystems(system);
  const b = await nixship(["build", "--fleet", fleetFile, "--on", host, "--json"]);
  expect(b.code, b.stderr).toBe(0);
  const path = (JSON.parse(b.stdout) as { hosts: Record<string, StorePath> }).hosts[host];
  if (path === undefined) throw new Error(`no system built for ${host}: ${b.stdout}`);
  const push = await nixship(["push", path, "--to", storeUrl, "--key", cacheKeyFile]);
  expect(push.code, push.stderr).toBe(0);
  return path;
}

/**
 * Publishes the channel's release again with `path` for `host` and a health check that takes
 * 6 s (time to stop the agent in); its sequence number.
 */
async function publishSlowly(host: string, path: StorePath): Promise<number> {
  const store = await openStore(storeUrl);
  try {
    const good = await channelRelease();
    const published = await publishRelease(store, {
      channel: CHANNEL,
      hosts: { ...good.release.hosts, [host]: { path } },
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [{ run: "sleep 6", timeout: 20 }] },
      confirmTimeout: 0,
      key: parseSecretKey(await readFile(releaseKeyFile, "utf8")),
    });
    return published.release.seq;
  } finally {
    await store.close();
  }
}

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

    // Each host started on its release within two poll intervals of its publication, and
    // signed its report with its SSH host key, the one the fleet names for it.
    const store = await openStore(storeUrl);
    const fleet = JSON.parse(await readFile(fleetFile, "utf8")) as {
      hosts: Record<string, { hostKey: string }>;
    };
    try {
      for (const host of HOSTS) {
        const r = await record(host);
        expect(r).toMatchObject({ state: "success", mode: "agent", channel: CHANNEL });
        const seq = r?.seq as number;
        const marker = progressKey(CHANNEL, seq, host, "success");
        const report = judgeReport(
          (await readAll(store, marker)) as Buffer,
          marker,
          fleet.hosts[host]?.hostKey as string,
          { host, channel: CHANNEL, seq, state: "success" },
        );
        expect(report).toMatchObject({ trusted: true });
        const release = await readRelease(store, CHANNEL, r?.seq as number);
        if (release.status !== "found") throw new Error("release file missing");
        const created = Date.parse(parseRelease(release.bytes, "release").release.created);
        const waited = (Date.parse(r?.startedAt as string) - created) / 1000;
        expect(waited, `${host} waited ${waited}s`).toBeLessThanOrEqual(2 * POLL * 1.1);
        expect(r?.current).toBe(r?.desired);
      }
    } finally {
      await store.close();
    }

    // `nixship status` reads the status objects for agent hosts. The canary's agent reads the
    // later wave's release (which names the same system for it) at its next poll: until then it
    // is behind the channel's newest release, so the read is repeated for two polls at most.
    let status = await nixship(["status", "--fleet", fleetFile, "--json"]);
    for (let i = 0; i < 4 * POLL && status.code !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      status = await nixship(["status", "--fleet", fleetFile, "--json"]);
    }
    // Not in step: its rows say which host and why.
    expect(status.code, `${status.stderr}${status.stdout}`).toBe(0);
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
    // The host's own log lines reach the deploy's output, from its status records.
    const logged = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; host?: string; line?: string })
      .filter((e) => e.type === "host-log");
    expect(logged.every((e) => e.host === "ag1")).toBe(true);
    const lines = logged.map((e) => e.line).join("\n");
    expect(lines).toMatch(/^switch-to-configuration switch \(.*-example-web-system-broken\)$/m);
    expect(lines).toContain(
      'http://127.0.0.1/health: expected status 200 within 5s, got status 500: "unhealthy"',
    );
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
        channel: CHANNEL,
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
      const old = await readRelease(storeB, CHANNEL, 1);
      if (old.status !== "found") throw new Error("release 1 missing");
      await writeChannel(old.bytes);
    } finally {
      await storeB.close();
    }
    await expectRefused(/older|replay/);
  });

  it("4. recovers from SIGKILL mid-activation: a consistent generation, then the release applied", async () => {
    // web-v3 for ag1, with a slow health check to kill the agent in.
    const v3 = await builtFor("ag1", "web-v3");
    const seq = await publishSlowly("ag1", v3);
    await waitFor("ag1", (s) => s.seq === seq && s.state === "applying");
    // SIGKILL the agent process itself (its activate.sh child is left running).
    process.kill(await agentPid(lab, "ag1"), "SIGKILL");
    await labAgents(lab, "start", "ag1");
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
      { env: lab.env },
    );
    const [profile, current] = status.stdout.trim().split("\n");
    expect(profile).toBe(v3);
    expect(current).toBe(v3);
  });

  it("4b. rollback waits for a collection of the cache before it reads the channel, and publishes nothing when interrupted", async () => {
    const before = await channelRelease();
    const store = await openStore(storeUrl);
    const lock = await takeGcLock(store, { waitMs: 10_000 });
    try {
      const child = spawn(
        process.execPath,
        [NIXSHIP_BIN, "rollback", "--fleet", fleetFile, "--on", "ag1", "--json"],
        {
          env: { ...process.env, NIXSHIP_RELEASE_KEY: releaseKeyFile },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let stderr = "";
      const ended = new Promise<number | null>((resolve) => child.on("close", resolve));
      const waiting = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 60_000);
        child.stderr?.setEncoding("utf8").on("data", (d: string) => {
          stderr += d;
          if (stderr.includes("waiting for the cache's garbage collection")) {
            clearTimeout(timer);
            resolve(true);
          }
        });
        void ended.then(() => resolve(false));
      });
      const waited = await waiting;
      child.kill("SIGINT");
      const code = await ended;
      expect(waited, stderr).toBe(true);
      expect(code, stderr).toBe(130);
    } finally {
      await lock.release();
      await store.close();
    }
    // Nothing was published while the collection held the cache.
    expect((await channelRelease()).release.seq).toBe(before.release.seq);
  });

  it("5. rollback: a signed rollback release sends the host back to the system it ran before", async () => {
    const before = await channelRelease();
    const v2 = (await record("ag2"))?.current;
    expect(before.release.hosts.ag1?.path).not.toBe(v2);
    // --to takes N, generation:N, release:N or a store path (test/agent-history.test.ts).
    const withTo = await nixship(["rollback", "--fleet", fleetFile, "--on", "ag1", "--to", "#1"], {
      env: { NIXSHIP_RELEASE_KEY: releaseKeyFile },
    });
    expect(withTo.code).toBe(2);
    expect(withTo.stderr).toMatch(/--to expects/);

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

  it("6. status tells paused, offline (a killed agent) and behind apart, and exits 1 for each", async () => {
    type Row = {
      host: string;
      state?: string;
      liveness?: string;
      behind?: boolean;
      inStep: boolean;
    };
    const status = async (host: string) => {
      const r = await nixship(["status", "--fleet", fleetFile, "--on", host, "--json"]);
      const row = (JSON.parse(r.stdout) as { hosts: Row[] }).hosts[0] as Row;
      return { code: r.code, row, stderr: r.stderr };
    };
    const until = async (host: string, what: (row: Row) => boolean, seconds: number) => {
      const deadline = Date.now() + seconds * 1000;
      for (;;) {
        const s = await status(host);
        if (what(s.row)) return s;
        if (Date.now() > deadline) {
          throw new Error(
            `${host}: status never matched within ${seconds}s; last: ${JSON.stringify(s.row)} ${s.stderr}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };
    // Tests 3 to 5 left ag2 and ag3 out of the channel (their last report: a refusal). A release
    // naming every host's running system puts them back in step.
    const publish = async (hosts: Record<string, { path: StorePath }>) => {
      const store = await openStore(storeUrl);
      try {
        return await publishRelease(store, {
          channel: CHANNEL,
          hosts,
          kind: "deploy",
          action: "switch",
          health: { http: [], commands: [] },
          confirmTimeout: 0,
          key: parseSecretKey(await readFile(releaseKeyFile, "utf8")),
        });
      } finally {
        await store.close();
      }
    };
    const running: Record<string, { path: StorePath }> = {};
    for (const host of HOSTS) running[host] = { path: (await record(host))?.current as StorePath };
    await publish(running);
    for (const host of HOSTS) {
      const s = await until(host, (r) => r.inStep, 30);
      expect(s.code).toBe(0);
      expect(s.row).toMatchObject({ liveness: "online", behind: false });
    }
    // The longest between two heartbeats, and what status allows before "offline".
    const period = Math.ceil(HEARTBEAT_EVERY * POLL * 1.1);
    const offlineWithin = 2 * period + POLL * 1.1 + 5;

    // Paused: the agent says so at its next poll.
    await labAgents(lab, "pause", "ag3");
    const paused = await until("ag3", (r) => r.liveness === "paused", 3 * POLL + 5);
    expect(paused.code).toBe(1);
    expect(paused.row).toMatchObject({ state: "success", inStep: false });
    const table = await nixship(["status", "--fleet", fleetFile, "--on", "ag3"]);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/^ag3\s+agent\s+\S+\s+\d+\s+paused\s/m);
    await labAgents(lab, "resume", "ag3");
    expect((await until("ag3", (r) => r.inStep, 3 * POLL + 5)).code).toBe(0);

    // Killed: offline within 2 heartbeat periods (2 x heartbeatEvery polls) and a poll.
    process.kill(await agentPid(lab, "ag2"), "SIGKILL");
    const offline = await until("ag2", (r) => r.liveness === "offline", offlineWithin);
    expect(offline.code).toBe(1);
    expect(offline.row).toMatchObject({ state: "success", inStep: false });

    // Behind: a release published while its agent is stopped names ag2; the others take it.
    const latest = await publish(running);
    const behind = await status("ag2");
    expect(behind.code).toBe(1);
    expect(behind.row).toMatchObject({ behind: true, inStep: false });
    for (const host of ["ag1", "ag3"]) {
      expect((await until(host, (r) => r.inStep, 3 * POLL + 10)).row.behind).toBe(false);
    }
    const text = await nixship(["status", "--fleet", fleetFile, "--on", "ag2"]);
    expect(text.stdout).toContain(`channel at ${latest.release.seq}`);

    // Started again, it catches up and is in step.
    await labAgents(lab, "start", "ag2");
    const back = await until("ag2", (r) => r.inStep, 60);
    expect(back.code).toBe(0);
  });

  it("7. --keep-generations 1: the agent prunes after the confirmed switch and reports it", async () => {
    // The generation pruned runs a system of this run alone (a fresh nonce): any process that
    // names a path, another test's build of the examples or an activation on another lab
    // host, keeps it in this host's store too (docs/development.md).
    const fresh = await freshSystems(["web-pruned-agent"]);
    try {
      // Whether ag3's store holds `path`, and what `nix-store --check-validity` said (for a failure).
      const validity = async (path: string) => {
        const r = await nixship(
          ["lab", "exec", "ag3", "--", "nix-store", "--check-validity", path],
          {
            env: lab.env,
          },
        );
        return { valid: r.code === 0, said: `exit ${r.code}: ${r.stdout}${r.stderr}` };
      };
      // ag3's system profile generations, by number.
      const generations = async () => {
        const r = await nixship(["lab", "exec", "ag3", "--", "ls", "/nix/var/nix/profiles"], {
          env: lab.env,
        });
        expect(r.code, r.stderr).toBe(0);
        return r.stdout
          .split("\n")
          .flatMap((l) => /^system-(\d+)-link$/.exec(l)?.slice(1) ?? [])
          .map(Number)
          .sort((a, b) => a - b);
      };
      let unique = "";
      for (const [system, flake] of [
        ["web-pruned-agent", fresh.dir],
        ["web-v2", EXAMPLES_DIR],
      ] as const) {
        await setSystemsOf(lab, system, undefined, flake);
        const step = await deployViaAgent("--on", "ag3");
        expect(step.code, `${system}: ${step.stderr}`).toBe(0);
        expect(await served("ag3")).toBe(system);
        if (system === "web-pruned-agent") unique = (await record("ag3"))?.current as string;
      }
      expect(unique).toMatch(/^\/nix\/store\/[0-9a-z]{32}-example-web-system-pruned-agent$/);
      const held = await validity(unique);
      expect(held.valid, `web-pruned-agent in ag3's store before the deploy: ${held.said}`).toBe(
        true,
      );
      const before = (await record("ag3"))?.generation as number;
      const older = (await generations()).filter((g) => g < before);
      // web-pruned-agent's generation (the one before) and those of the earlier tests.
      expect(older).toContain(before - 1);
      await setSystems("web-v3");
      const r = await deployViaAgent("--on", "ag3", "--keep-generations", "1");
      expect(r.code, `${r.stderr}\n${await agentLog(lab, "ag3")}`).toBe(0);
      expect(await served("ag3")).toBe("web-v3");
      const kept = [before, before + 1];
      const pruned = { ok: true, kept, removed: older, gc: "done" };
      expect((await channelRelease()).release.keepGenerations).toBe(1);
      expect(summaryOf(r).ag3, await agentLog(lab, "ag3")).toMatchObject({
        status: "activated",
        pruned,
      });
      expect(await record("ag3")).toMatchObject({ state: "success", pruned });
      expect(await generations()).toEqual(kept);
      // web-pruned-agent ran only in a generation now removed: gone from the host's store.
      const left = await validity(unique);
      expect(
        left.valid,
        `web-pruned-agent still in ag3's store: ${left.said}\n${await agentLog(lab, "ag3")}`,
      ).toBe(false);
      expect(left.said, "nix-store said web-pruned-agent is not valid").toContain("is not valid");
    } finally {
      await fresh.remove();
    }
  });

  it("8. SIGTERM to the agent's process group (Ctrl-C at its terminal) lets the activation in progress finish: the release is applied, not failed", async () => {
    const runs = (await record("ag1"))?.current;
    // A system ag1 does not run, with a slow health check to signal the agent in.
    const v1 = await builtFor("ag1", "web-v1");
    const [name, target] =
      v1 === runs ? ["web-v3", await builtFor("ag1", "web-v3")] : ["web-v1", v1];
    const seq = await publishSlowly("ag1", target);
    await waitFor("ag1", (s) => s.seq === seq && s.state === "applying");
    const pid = await agentPid(lab, "ag1");
    // As a terminal's Ctrl-C, or a stop that signals the whole group: every process in it.
    process.kill(-pid, "SIGTERM");
    const done = await waitFor("ag1", (s) => s.seq === seq && s.state !== "applying", 60);
    expect(done, await agentLog(lab, "ag1")).toMatchObject({ state: "success", current: target });
    expect(await served("ag1")).toBe(name);
    await labAgents(lab, "start", "ag1");
  });
});
