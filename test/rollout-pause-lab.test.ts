// Pauses of a rollout on three ssh lab hosts (pa1 the canary, pa2 and pa3 the wave after it):
// `rollout resume` from another process lets the waves go on; `rollout abort` rolls the canary
// back and changes no other host; a pause nobody answers takes its default (abort) at its
// deadline; Ctrl-C while paused leaves the record saying so. `plan` and `status` show pauses.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, run } from "../support/cli.js";
import { interruptDeploy } from "./support/interrupt-deploy.js";
import {
  type DeployEventLine,
  deployEvents,
  labDeployArgs,
  servedBy,
  setExampleSystems,
  summaryOf,
} from "./support/lab-deploy.js";
import { deployPausing as pausing } from "./support/paused-deploy.js";
import { type RolloutFile, rolloutFiles, undoPlanOf } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
const H = (i: number) => `pa${i}`;

beforeAll(async () => {
  lab = await startSshLab("pa", 3);
  await setExampleSystems(lab.fleetFile, { [H(1)]: "web-v1", [H(2)]: "web-v1", [H(3)]: "web-v1" });
  const first = await lab.deploy("--json");
  expect(first.code, first.stderr).toBe(0);
}, 300_000);
afterAll(async () => {
  await lab?.down();
});

/** The fleet's policy with these pause keys (the canary is pa1, alone in wave 1). */
async function setPause(pause: Record<string, unknown>): Promise<void> {
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    policy?: Record<string, unknown>;
  };
  const { pauseAfter: _a, pauseTimeout: _t, onPauseTimeout: _o, ...rest } = doc.policy ?? {};
  doc.policy = { ...rest, canary: 1, parallel: 2, ...pause };
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
}

async function systems(name: string): Promise<void> {
  await setExampleSystems(lab.fleetFile, { [H(1)]: name, [H(2)]: name, [H(3)]: name });
}

const served = async () => await Promise.all([1, 2, 3].map((i) => servedBy(lab.info, H(i))));

/** `deploy --json` of the lab's fleet, acting at its pause (support/paused-deploy.ts). */
const deployPausing = (atPause: (paused: DeployEventLine) => Promise<void>) =>
  pausing(
    labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec"), "--json"),
    atPause,
  );

async function record(id: string): Promise<RolloutFile> {
  const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
  const found = (await rolloutFiles(fleet.cache.url)).find((r) => r.id === id);
  expect(found, `rollout ${id}`).toBeDefined();
  return found as RolloutFile;
}

const answer = (action: "resume" | "abort", id: string, ...extra: string[]) =>
  lab.nixship(["rollout", action, id, "--fleet", lab.fleetFile, ...extra]);

describe("a pause after the canary", () => {
  it("plan shows it; resume from another process lets the waves go on", async () => {
    await setPause({ pauseAfter: "canary", pauseTimeout: 600 });
    await systems("web-v2");
    const plan = await lab.nixship(["plan", "--fleet", lab.fleetFile]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(
      /pauses:\n {2}after wave 1 \(canary\): waits for 'nixship rollout resume ID' or 'nixship rollout abort ID'.*at most 10m, then abort/,
    );
    let whilePaused: { served: string[]; status: unknown; record: RolloutFile } | undefined;
    let resumed: CliRun | undefined;
    const r = await deployPausing(async (paused) => {
      const id = paused.rollout as string;
      const status = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json"]);
      whilePaused = {
        served: await served(),
        status: JSON.parse(status.stdout),
        record: await record(id),
      };
      resumed = await answer("resume", id, "--json");
    });
    expect(r.code, r.stderr).toBe(0);
    const id = r.paused.rollout as string;
    expect(r.paused).toMatchObject({
      afterWave: 1,
      kind: "canary",
      onTimeout: "abort",
      // With the deploy's --fleet: they run as printed, from anywhere.
      resume: `nixship rollout resume ${id} --fleet ${lab.fleetFile}`,
      abort: `nixship rollout abort ${id} --fleet ${lab.fleetFile}`,
    });
    // While it waited: the canary on v2, the others untouched, the record and status say paused.
    expect(whilePaused?.served).toEqual(["web-v2", "web-v1", "web-v1"]);
    expect(whilePaused?.record).toMatchObject({
      state: "paused",
      pauses: [{ afterWave: 1, onTimeout: "abort" }],
    });
    expect(whilePaused?.status).toMatchObject({
      pausedRollouts: [{ id, pause: { afterWave: 1 } }],
    });
    expect(resumed?.code, resumed?.stderr).toBe(0);
    expect(JSON.parse(resumed?.stdout ?? "{}")).toMatchObject({
      rollout: id,
      action: "resume",
      taken: true,
    });
    const events = deployEvents(r).map((e) => e.type);
    expect(events.indexOf("pause-ended")).toBeGreaterThan(events.indexOf("paused"));
    expect(events.filter((t) => t === "wave-start")).toHaveLength(2);
    expect(await served()).toEqual(["web-v2", "web-v2", "web-v2"]);
    expect(await record(id)).toMatchObject({
      state: "succeeded",
      pauses: [{ afterWave: 1, answer: { action: "resume", by: expect.stringContaining("@") } }],
    });
    // A rollout that is not paused any more gets a clear error.
    const again = await answer("resume", id);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`rollout ${id} is not paused: it is succeeded`);
  });

  it("abort from another process rolls the canary back, and no other host changes", async () => {
    await systems("web-v3");
    let aborted: CliRun | undefined;
    const r = await deployPausing(async (paused) => {
      aborted = await answer("abort", paused.rollout as string);
    });
    const id = r.paused.rollout as string;
    expect(aborted?.code, aborted?.stderr).toBe(0);
    expect(aborted?.stdout).toContain(`rollout ${id} aborted after wave 1`);
    expect(r.code, r.stderr).toBe(1);
    expect(await served()).toEqual(["web-v2", "web-v2", "web-v2"]);
    // One summary, last: the deploy's (the canary activated, the next wave never started),
    // carrying the rollback that followed (the canary went back).
    const summaries = deployEvents(r).filter((e) => e.type === "summary");
    expect(summaries).toHaveLength(1);
    expect(deployEvents(r).at(-1)?.type).toBe("summary");
    const first = summaryOf(r);
    expect(first[H(1)]).toMatchObject({ status: "activated" });
    expect(first[H(2)]).toMatchObject({ status: "skipped", reason: "not-started" });
    expect(first[H(3)]).toMatchObject({ status: "skipped", reason: "not-started" });
    const carried = summaries[0]?.rollback as
      | { ok: boolean; results: { host: string; outcome: Record<string, unknown> }[] }
      | undefined;
    expect(carried?.ok).toBe(true);
    expect(carried?.results.find((x) => x.host === H(1))?.outcome).toMatchObject({
      status: "activated",
    });
    // The rollback of the rollout: the canary back, the others stay where they are.
    const undo = undoPlanOf(r.stdout);
    expect(undo.rollout).toBe(id);
    expect(undo.steps.map((s) => [s.host, s.kind])).toEqual([
      [H(1), "back"],
      [H(2), "stays"],
      [H(3), "stays"],
    ]);
    const rec = await record(id);
    expect(rec).toMatchObject({
      state: "aborted",
      stopped: expect.stringContaining("aborted by"),
      pauses: [{ afterWave: 1, answer: { action: "abort", by: expect.stringContaining("@") } }],
    });
    const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
    const rollback = (await rolloutFiles(fleet.cache.url)).find((f) => f.undoes === id);
    expect(rollback?.state).toBe("succeeded");
    const late = await answer("abort", id);
    expect(late.code).toBe(1);
    expect(late.stderr).toContain(`rollout ${id} is not paused: it is aborted`);
  });

  it("a pause nobody answers takes its default, abort, at its deadline", async () => {
    await setPause({ pauseAfter: 1, pauseTimeout: 3 });
    await systems("web-v3");
    const r = await deployPausing(async () => {});
    const id = r.paused.rollout as string;
    expect(r.code, r.stderr).toBe(1);
    const ended = deployEvents(r).find((e) => e.type === "pause-ended");
    expect(ended).toMatchObject({ action: "abort", timedOut: true });
    expect(await served()).toEqual(["web-v2", "web-v2", "web-v2"]);
    expect(await record(id)).toMatchObject({
      state: "aborted",
      pauses: [{ answer: { action: "abort", timedOut: true } }],
    });
  });

  it("Ctrl-C while paused: the record says interrupted while paused; no later wave starts", async () => {
    await setPause({ pauseAfter: "canary", pauseTimeout: 600 });
    await systems("web-v3");
    const r = await interruptDeploy(
      labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec"), "--json"),
      {},
      (e) => e.type === "paused",
    );
    expect(r.code, r.stderr).toBe(130);
    const id = r.signalledAt.rollout as string;
    expect(await served()).toEqual(["web-v3", "web-v2", "web-v2"]);
    expect(await record(id)).toMatchObject({
      state: "interrupted",
      stopped: "interrupted (SIGINT) while paused after wave 1",
      pauses: [{ afterWave: 1, answer: { action: "interrupted" } }],
    });
    const late = await answer("resume", id);
    expect(late.code).toBe(1);
    expect(late.stderr).toContain(`rollout ${id} is not paused: it is interrupted`);
  });

  it("another operator's deploy while it is paused: the resumed wave refuses the host it changed, and says so", async () => {
    await setPause({ pauseAfter: "canary", pauseTimeout: 600 });
    await systems("web-v4");
    // Operator B's fleet: the same hosts, pa3 on another system than it runs, no pause.
    const mine = (await servedBy(lab.info, H(3))) === "web-v1" ? "web-v2" : "web-v1";
    const other = join(lab.info.dir, "fleet-operator-b.json");
    const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
      policy: Record<string, unknown>;
    };
    const { pauseAfter: _a, pauseTimeout: _t, ...unpaused } = doc.policy;
    doc.policy = unpaused;
    await writeFile(other, JSON.stringify(doc));
    await setExampleSystems(other, { [H(3)]: mine });
    let byOther: CliRun | undefined;
    let resumed: CliRun | undefined;
    const r = await deployPausing(async (paused) => {
      byOther = await lab.nixship(
        labDeployArgs(lab.info, other, join(lab.info.dir, "cache.sec"), "--on", H(3)),
      );
      resumed = await answer("resume", paused.rollout as string);
    });
    expect(byOther?.code, byOther?.stderr).toBe(0);
    expect(resumed?.code, resumed?.stderr).toBe(0);
    // pa2 gets the paused rollout's system; pa3 keeps what the other operator gave it.
    expect(await served()).toEqual(["web-v4", "web-v4", mine]);
    const summary = summaryOf(r);
    expect(summary[H(2)]).toMatchObject({ status: "activated" });
    expect(summary[H(3)]).toMatchObject({
      status: "skipped",
      reason: "refused",
      message: expect.stringMatching(
        new RegExp(
          `^it runs /nix/store/\\S+-example-${mine.replace("web-", "web-system-")}, not /nix/store/\\S+, which this activation expected: changed since; nothing was done$`,
        ),
      ),
    });
    expect(r.code, r.stderr).toBe(1);
  });

  it("another operator's activation holding a host's lock at its turn: refused, nothing done, the rollout partial, the host not behind it", async () => {
    await setPause({ pauseAfter: "canary", pauseTimeout: 600 });
    await systems("web-v3");
    const before = await served();
    const onHost = (command: string) =>
      run("ssh", ["-F", join(lab.info.dir, "ssh_config"), H(3), command]);
    let resumed: CliRun | undefined;
    let holder = 0;
    const r = await deployPausing(async (paused) => {
      // Another deploy's activation took pa3's lock after the plan (two deploys at once): a
      // live holder within its deadline, as activate.sh writes the lock (its real refusal).
      const sleeper = await onHost("setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!");
      holder = Number(sleeper.stdout.trim());
      const since = Math.floor(Date.now() / 1000);
      const planted = await onHost(
        `start=$(cut -d' ' -f22 /proc/${holder}/stat) && mkdir -p /run/nixship/lock && printf 'pid=${holder}\nstart=%s\nkind=activate\ncommand=activate /nix/store/other-operator\nsince=${since}\ndeadline=${since + 600}\n' "$start" > /run/nixship/lock/info`,
      );
      expect(planted.code, planted.stderr).toBe(0);
      resumed = await answer("resume", paused.rollout as string);
    });
    await onHost(`kill ${holder}; rm -rf /run/nixship/lock`);
    expect(resumed?.code, resumed?.stderr).toBe(0);
    expect(await served()).toEqual(["web-v3", "web-v3", before[2]]);
    const summary = summaryOf(r);
    expect(summary[H(3)]).toMatchObject({
      status: "skipped",
      reason: "refused",
      message: expect.stringMatching(
        new RegExp(
          `^another activation is in progress on this host \\(activate /nix/store/other-operator, pid ${holder}, .*; nothing was done$`,
        ),
      ),
    });
    expect(r.code, r.stderr).toBe(1);
    const id = deployEvents(r).find((e) => e.type === "paused")?.rollout as string;
    const recorded = await record(id);
    expect(recorded.state).toBe("partial");
    // The other operator's turn there: no view counts pa3 behind this rollout.
    const status = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json"]);
    const rows = JSON.parse(status.stdout) as {
      hosts: { host: string; hostState: string; behindRollout?: unknown }[];
    };
    expect(rows.hosts.find((h) => h.host === H(3))).toMatchObject({ hostState: "in-step" });
    expect(rows.hosts.find((h) => h.host === H(3))?.behindRollout).toBeUndefined();
  });
});
