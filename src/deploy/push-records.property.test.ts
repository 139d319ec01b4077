// A host's record is a fold of what happened to it. Random sequences of what push deploys,
// rollbacks, the host's agent and its operator do to a host (a deploy that activates, one found
// up to date, failures before the switch, failures rolled back, a switch that could not go
// back, a manual rollback; a release the agent applies or refuses, a system switched by hand
// that the agent reports running, a boot set by hand, a reboot the agent reports) run against
// a model of the host's system profile and through the real writers (recordResults,
// recordRollbacks, agent-records.ts) into a directory store. After each, the record must name
// what the host runs, the system it ran before, a generation only of the system it runs, and
// no origin or delta of another system; across the sequence, a generation number never names
// two systems and the record's times never go backwards (the agent's clock runs behind).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostSystem } from "../agent/activator.js";
import {
  type AgentSelf,
  observedRecord,
  type RecordWhat,
  refusedRecord,
  releaseRecord,
  runningRecord,
} from "../agent/agent-records.js";
import type { StorePath } from "../nix/store-path.js";
import type { DeltaReport } from "../status/delta-report.js";
import { runningGeneration } from "../status/next-record.js";
import { rolloutKey } from "../status/rollout.js";
import { APPLYING, type RecordOrigin, type StatusRecord } from "../status/status.js";
import { readStatus, writeStatus } from "../status/status-store.js";
import { openStore } from "../store/url.js";
import { deployedBy } from "./deploy-origin.js";
import type { HostResult } from "./events.js";
import { recordResults, recordRollbacks } from "./push-records.js";

const SYSTEMS = ["a", "b", "c", "d"].map(
  (n) => `/nix/store/${n.repeat(32)}-nixos-system-host-${n}` as StorePath,
);

/**
 * The host: its system profile (activate.sh's rules, including a failure's cleanup; and Nix's
 * own for what is done by hand), the system it runs, and what put that system there.
 */
class ModelHost {
  generations = new Map<number, StorePath>();
  /** The profile's generation. */
  gen: number | undefined;
  /** What /run/current-system is (a boot set by hand leaves it behind the profile). */
  running: StorePath | undefined;
  ranBefore: StorePath | undefined;
  /** The highest number activate.sh ever made (its record in /nix/var/nixship/generations). */
  made = 0;
  /** What put the running system there, as its record may say; undefined: not known. */
  putBy: RecordOrigin | undefined;
  /** What the host fetched by delta to get the system it runs. */
  fetched: DeltaReport | undefined;
  /** Whether a generation was made by hand (two generations may then hold one system). */
  byHand = false;

  get profile(): StorePath | undefined {
    return this.gen === undefined ? undefined : this.generations.get(this.gen);
  }

  private highest(): number {
    return Math.max(0, ...this.generations.keys());
  }

  /** activate.sh's new generation: one past the highest it ever made; none when on it already. */
  nixshipGeneration(system: StorePath): number {
    if (this.gen !== undefined && this.profile === system) return this.gen;
    this.made = Math.max(this.made, this.highest()) + 1;
    this.generations.set(this.made, system);
    return this.made;
  }

  /** `nix-env --set` by hand: one past the highest the profile has (or the last, if the same). */
  nixGeneration(system: StorePath): number {
    this.byHand = true;
    const last = this.highest();
    if (last > 0 && this.generations.get(last) === system) return last;
    this.generations.set(last + 1, system);
    return last + 1;
  }

  /** The profile on generation `gen`, and the host switched to it. */
  switchTo(gen: number): void {
    this.gen = gen;
    this.runs(this.generations.get(gen) as StorePath);
  }

  /**
   * The host runs `system` now: what it ran is the system it ran before, when it moved (what
   * put it there and how it came are the caller's to say).
   */
  runs(system: StorePath): void {
    if (system === this.running) return;
    this.putBy = undefined;
    this.fetched = undefined;
    this.ranBefore = this.running;
    this.running = system;
  }

  /** The generation below the profile's, as `rollback` without --to finds it. */
  below(): number | undefined {
    const lower = [...this.generations.keys()].filter((g) => g < (this.gen ?? 0));
    return lower.length === 0 ? undefined : Math.max(...lower);
  }

  /** What `activate.sh status` says (the agent's inspect). */
  get inspected(): HostSystem {
    return {
      current: this.running ?? null,
      profile: this.profile ?? null,
      generation: this.gen ?? null,
    };
  }
}

/** A small deterministic generator (mulberry32), so that a failing seed can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let dir: string;
let url: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-record-fold-"));
  url = `file://${dir}?fsync=false`;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function read(host: string): Promise<StatusRecord | undefined> {
  const store = await openStore(url);
  try {
    return await readStatus(store, host);
  } finally {
    await store.close();
  }
}

/** Stores an agent's record, checked as it is written (an agent writes several in a step). */
async function write(run: Run, record: StatusRecord): Promise<void> {
  const store = await openStore(url);
  try {
    await writeStatus(store, record);
  } finally {
    await store.close();
  }
  check(run, record);
}

/**
 * What holds of every record written: it names what the host runs, a generation only of that
 * system and never one an earlier record gave another system, no origin or delta of another
 * system, and times that never go backwards. `settled`: the step is done, and the record
 * names the system the host ran before too.
 */
function check(run: Run, record: StatusRecord | undefined, settled = false): void {
  const { model } = run;
  const where = `${run.host} (its seed), steps ${run.steps.join(" ")}`;
  if (record !== undefined && run.last !== undefined) {
    // Its times never go backwards, whoever wrote it and by whichever clock.
    expect(Date.parse(record.updatedAt), where).toBeGreaterThanOrEqual(
      Date.parse(run.last.updatedAt),
    );
  }
  if (record !== undefined) {
    expect(Date.parse(record.startedAt), where).toBeLessThanOrEqual(Date.parse(record.updatedAt));
  }
  run.last = record;
  if (model.running === undefined) {
    // Nothing ever ran: a record, if any, names no system as running.
    expect(record?.current ?? null, where).toBeNull();
    return;
  }
  expect(record?.current, where).toBe(model.running);
  const generation = record?.generation ?? null;
  if (model.profile === model.running && !model.byHand) {
    expect([null, model.gen], where).toContain(generation);
  } else if (generation !== null) {
    // A boot is pending, or another generation holds the system too: a generation named
    // is one that holds the system it runs.
    expect(model.generations.get(generation), where).toBe(model.running);
  }
  if (generation !== null) {
    // A generation number names one system in the host's history.
    const earlier = run.named.get(generation);
    if (earlier !== undefined) {
      expect(record?.current, `${where}: generation ${generation}`).toBe(earlier);
    }
    run.named.set(generation, record?.current ?? null);
  }
  if (settled && model.ranBefore !== undefined) {
    expect(record?.previous, where).toBe(model.ranBefore);
  }
  // What put the system there and how it came belong to that system alone.
  // (An origin of kind "unknown" names nothing: the writer said it does not know.)
  const named = record?.origin?.kind === "unknown" ? undefined : record?.origin;
  if (named !== undefined) expect(named, where).toEqual(model.putBy);
  if (record?.delta !== undefined) expect(record.delta, where).toEqual(model.fetched);
}

type Step =
  | "activate"
  | "up-to-date"
  | "fail-before-switch"
  | "fail-rolled-back"
  | "fail-in-place"
  | "rollback"
  | "agent-apply"
  | "agent-reboot"
  | "agent-refuse"
  | "switch-by-hand"
  | "boot-by-hand"
  | "reboot";

const STEPS: readonly Step[] = [
  "activate",
  "up-to-date",
  "fail-before-switch",
  "fail-rolled-back",
  "fail-in-place",
  "rollback",
  "agent-apply",
  "agent-reboot",
  "agent-refuse",
  "switch-by-hand",
  "boot-by-hand",
  "reboot",
];

/** One host's run: its model, the agent's clock (behind the deployer's) and its counters. */
interface Run {
  readonly host: string;
  readonly model: ModelHost;
  readonly pick: () => number;
  readonly self: AgentSelf;
  /** The agent's clock, this many milliseconds behind the deployer's. */
  readonly lag: number;
  step: number;
  seq: number;
  /** The steps so far, to name a failing sequence. */
  readonly steps: Step[];
  /** The record as last checked. */
  last: StatusRecord | undefined;
  /** Each generation number the records named, with the system they named it for. */
  readonly named: Map<number, string | null>;
}

const agentNow = (run: Run) => new Date(Date.now() - run.lag).toISOString();

/** A delta report that names the step that fetched it. */
const deltaOf = (run: Run): DeltaReport => ({
  paths: run.step,
  bytes: 1,
  narBytes: 2,
  wholePaths: 0,
  wholeNarBytes: 0,
  failed: 0,
});

/** Applies `step` to the model and writes the record as the deployer or the agent would. */
async function apply(run: Run, step: Step): Promise<void> {
  const { host, model, pick } = run;
  const desired = SYSTEMS[Math.floor(pick() * SYSTEMS.length)] as StorePath;
  // What the deploy's survey said of the host (it may not say its generation).
  const survey = {
    host,
    current: model.running,
    generation:
      pick() < 0.3
        ? undefined
        : (runningGeneration({
            current: model.running,
            profile: model.profile,
            generation: model.gen,
          }) ?? undefined),
  };
  const rollout: RecordOrigin = {
    kind: "rollout",
    key: rolloutKey(new Date(), run.step.toString(16).padStart(8, "0")),
  };
  const deploy = (outcome: HostResult["outcome"], to = desired) =>
    recordResults(
      url,
      "ssh",
      [{ host, desired: to, seconds: outcome.status === "skipped" ? 0 : 1, outcome }],
      { action: "switch", hosts: [survey] },
      rollout,
    );
  switch (step) {
    case "activate": {
      const was = model.running;
      const fetched = model.fetched;
      const delta = pick() < 0.5 ? deltaOf(run) : undefined;
      const gen = model.nixshipGeneration(desired);
      model.switchTo(gen);
      // A new generation, even of the same system: the activation's word.
      model.ranBefore = was;
      model.putBy = rollout;
      model.fetched = delta ?? (was === desired ? fetched : undefined);
      await deploy({
        status: "activated",
        generation: gen,
        previous: was,
        ...(delta === undefined ? {} : { delta }),
      });
      return;
    }
    case "up-to-date":
      if (model.running === undefined) return;
      await deploy({ status: "skipped", reason: "up-to-date" }, model.running);
      return;
    case "fail-before-switch":
      await deploy({ status: "failed", phase: "realise", message: "no", rolledBack: false });
      return;
    case "fail-rolled-back":
      // The new generation is made, switched to, and forgotten when the host goes back; its
      // number is not made again by activate.sh (Nix, by hand, would make it again).
      if (model.running === undefined || desired === model.profile) return;
      model.generations.delete(model.nixshipGeneration(desired));
      await deploy({ status: "failed", phase: "health", message: "no", rolledBack: true });
      return;
    case "fail-in-place": {
      // A first deploy's failure: nothing to go back to; the host runs the failed system.
      if (model.running !== undefined) return;
      model.switchTo(model.nixshipGeneration(desired));
      model.putBy = rollout;
      await deploy({ status: "failed", phase: "switch", message: "no", rolledBack: false });
      return;
    }
    case "rollback": {
      const to = model.below();
      if (to === undefined) return;
      model.switchTo(to);
      model.putBy = { kind: "rollback", by: deployedBy() };
      await recordRollbacks(url, "ssh", [
        {
          host,
          outcome: { status: "rolled-back", generation: to, path: model.running as StorePath },
        },
      ]);
      return;
    }
    case "agent-apply": {
      // A release naming another system than the host runs, applied and confirmed.
      if (desired === model.running) return;
      const release = { channel: "prod", seq: ++run.seq };
      const startedAt = agentNow(run);
      const was = model.running ?? null;
      const report = { release, path: desired, startedAt, previous: was };
      await write(
        run,
        releaseRecord(
          await read(host),
          run.self,
          { ...report, what: APPLYING, system: undefined },
          agentNow(run),
        ),
      );
      const delta = pick() < 0.5 ? deltaOf(run) : undefined;
      model.switchTo(model.nixshipGeneration(desired));
      model.putBy = { kind: "release", ...release };
      model.fetched = delta;
      await write(
        run,
        releaseRecord(
          await read(host),
          run.self,
          {
            ...report,
            what: {
              state: "success",
              phase: null,
              error: null,
              rolledBack: null,
              ...(delta === undefined ? {} : { delta }),
            },
            system: model.inspected,
          },
          agentNow(run),
        ),
      );
      return;
    }
    case "agent-reboot": {
      // A release with a reboot: the boot activation, the reboot, the boot judged; a failed
      // judgement puts the profile back, removes the generation and reboots into the one before.
      if (desired === model.running || model.running === undefined) return;
      const release = { channel: "prod", seq: ++run.seq };
      const startedAt = agentNow(run);
      const was = model.running;
      const report = { release, path: desired, startedAt, previous: was };
      const record = async (what: RecordWhat, system: HostSystem | undefined) =>
        write(
          run,
          releaseRecord(await read(host), run.self, { ...report, what, system }, agentNow(run)),
        );
      await record(APPLYING, undefined);
      const before = model.gen as number;
      const made = model.nixshipGeneration(desired);
      model.gen = made;
      await record({ ...APPLYING, phase: "reboot" }, model.inspected);
      model.runs(desired);
      await record({ ...APPLYING, phase: "health" }, model.inspected);
      if (pick() < 0.5) {
        model.putBy = { kind: "release", ...release };
        await record(
          { state: "success", phase: null, error: null, rolledBack: null },
          model.inspected,
        );
        return;
      }
      model.gen = before;
      model.generations.delete(made);
      await record(
        { state: "failed", phase: "health", error: "no", rolledBack: true },
        model.inspected,
      );
      model.runs(was);
      const next = observedRecord(await read(host), run.self, model.inspected, agentNow(run));
      if (next !== undefined) await write(run, next);
      return;
    }
    case "agent-refuse":
      await write(
        run,
        refusedRecord(
          await read(host),
          run.self,
          {
            channel: "prod",
            seq: pick() < 0.5 ? undefined : run.seq + 1,
            digest: `sha256-${"A".repeat(43)}=`,
            phase: "verify",
            desired: null,
            system: model.inspected,
            message: "not signed by a trusted key",
          },
          agentNow(run),
        ),
      );
      return;
    case "switch-by-hand": {
      // nixos-rebuild switch (Nix numbers the generation), then the agent's next look. It
      // reports only on a host whose record it has.
      const before = await read(host);
      if (before === undefined || desired === model.running) return;
      model.switchTo(model.nixGeneration(desired));
      const next = runningRecord(before, run.self, model.inspected, agentNow(run));
      if (next !== undefined) await write(run, next);
      return;
    }
    case "boot-by-hand":
      // nixos-rebuild boot: the profile moves on, the host runs what it ran until it reboots.
      if (model.running === undefined) return;
      model.gen = model.nixGeneration(desired);
      return;
    case "reboot": {
      const before = await read(host);
      if (before === undefined || model.profile === undefined) return;
      if (model.profile !== model.running) model.runs(model.profile);
      const next = observedRecord(before, run.self, model.inspected, agentNow(run));
      if (next !== undefined) await write(run, next);
      return;
    }
  }
}

describe("a host's record through random sequences of deploys, rollbacks and its agent's reports", () => {
  it("names what the host runs, the system it ran before, and nothing of another system", {
    timeout: 120_000,
  }, async () => {
    for (let seed = 1; seed <= 60; seed++) {
      const pick = random(seed);
      const host = `h${seed}`;
      const model = new ModelHost();
      const run: Run = {
        host,
        model,
        pick,
        self: { host, package: undefined },
        lag: Math.floor(pick() * 5000),
        step: 0,
        seq: 0,
        steps: [],
        last: undefined,
        named: new Map(),
      };
      for (let i = 0; i < 16; i++) {
        const step = STEPS[Math.floor(pick() * STEPS.length)] as Step;
        run.steps.push(step);
        run.step = seed * 100 + i;
        await apply(run, step);
        check(run, await read(host), true);
      }
    }
  });
});
