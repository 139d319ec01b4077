// Issue 46: a host's record is a fold of what happened to it. Random sequences of what push
// deploys and rollbacks do to a host (a deploy that activates, one found up to date, failures
// before the switch, failures rolled back, a switch that could not go back, a manual rollback)
// run against a model of the host's system profile and through the real writers
// (recordResults, recordRollbacks) into a directory store; after each, the record must name
// what the host runs, the system it ran before, and never a generation it is not at.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import type { StatusRecord } from "../status/status.js";
import { readStatus } from "../status/status-store.js";
import { openStore } from "../store/url.js";
import type { HostResult } from "./events.js";
import { recordResults, recordRollbacks } from "./push-records.js";

const SYSTEMS = ["a", "b", "c", "d"].map(
  (n) => `/nix/store/${n.repeat(32)}-nixos-system-host-${n}` as StorePath,
);

/** The host as its system profile has it: activate.sh's rules, including a failure's cleanup. */
class ModelHost {
  generations = new Map<number, StorePath>();
  gen: number | undefined;
  ranBefore: StorePath | undefined;

  get current(): StorePath | undefined {
    return this.gen === undefined ? undefined : this.generations.get(this.gen);
  }

  private newest(): number {
    return Math.max(0, ...this.generations.keys());
  }

  /** A new generation that the host switches to. */
  switchTo(system: StorePath): number {
    const gen = this.newest() + 1;
    this.generations.set(gen, system);
    this.ranBefore = this.current;
    this.gen = gen;
    return gen;
  }

  /** The generation below the current one, as `rollback` without --to finds it. */
  below(): number | undefined {
    const lower = [...this.generations.keys()].filter((g) => g < (this.gen ?? 0));
    return lower.length === 0 ? undefined : Math.max(...lower);
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

type Step =
  | "activate"
  | "up-to-date"
  | "fail-before-switch"
  | "fail-rolled-back"
  | "fail-in-place"
  | "rollback";

const STEPS: readonly Step[] = [
  "activate",
  "up-to-date",
  "fail-before-switch",
  "fail-rolled-back",
  "fail-in-place",
  "rollback",
];

/** Applies `step` to the model and writes the record as a deploy or a rollback would. */
async function apply(host: string, model: ModelHost, step: Step, pick: () => number) {
  const desired = SYSTEMS[Math.floor(pick() * SYSTEMS.length)] as StorePath;
  // What the deploy's survey said of the host (it may not say its generation).
  const survey = {
    host,
    current: model.current,
    generation: pick() < 0.3 ? undefined : model.gen,
  };
  const result = (outcome: HostResult["outcome"], to = desired): HostResult => ({
    host,
    desired: to,
    seconds: 1,
    outcome,
  });
  switch (step) {
    case "activate": {
      const before = model.current;
      const gen = model.switchTo(desired);
      await recordResults(
        url,
        "ssh",
        [result({ status: "activated", generation: gen, previous: before })],
        { action: "switch", hosts: [survey] },
      );
      return;
    }
    case "up-to-date": {
      if (model.current === undefined) return;
      await recordResults(
        url,
        "ssh",
        [result({ status: "skipped", reason: "up-to-date" }, model.current)],
        { action: "switch", hosts: [survey] },
      );
      return;
    }
    case "fail-before-switch":
      await recordResults(
        url,
        "ssh",
        [result({ status: "failed", phase: "realise", message: "no", rolledBack: false })],
        { action: "switch", hosts: [survey] },
      );
      return;
    case "fail-rolled-back": {
      // The new generation is made, switched to, and forgotten when the host goes back.
      if (model.current === undefined) return;
      await recordResults(
        url,
        "ssh",
        [result({ status: "failed", phase: "health", message: "no", rolledBack: true })],
        { action: "switch", hosts: [survey] },
      );
      return;
    }
    case "fail-in-place": {
      // A first deploy's failure: nothing to go back to; the host runs the failed system.
      if (model.current !== undefined) return;
      model.switchTo(desired);
      await recordResults(
        url,
        "ssh",
        [result({ status: "failed", phase: "switch", message: "no", rolledBack: false })],
        { action: "switch", hosts: [survey] },
      );
      return;
    }
    case "rollback": {
      const to = model.below();
      if (to === undefined) return;
      model.ranBefore = model.current;
      model.gen = to;
      await recordRollbacks(url, "ssh", [
        {
          host,
          outcome: { status: "rolled-back", generation: to, path: model.current as StorePath },
        },
      ]);
      return;
    }
  }
}

describe("a host's record through random sequences of push deploys and rollbacks", () => {
  it("names what the host runs, the system it ran before, and never a wrong generation", {
    timeout: 60_000,
  }, async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const pick = random(seed);
      const host = `h${seed}`;
      const model = new ModelHost();
      const steps: Step[] = [];
      for (let i = 0; i < 12; i++) {
        const step = STEPS[Math.floor(pick() * STEPS.length)] as Step;
        steps.push(step);
        await apply(host, model, step, pick);
        const record = await read(host);
        const where = `seed ${seed}, steps ${steps.join(" ")}`;
        if (model.current === undefined) {
          // Nothing ever ran: a record, if any, names no system as running.
          expect(record?.current ?? null, where).toBeNull();
          continue;
        }
        expect(record?.current, where).toBe(model.current);
        expect([null, model.gen], where).toContain(record?.generation);
        if (model.ranBefore !== undefined) expect(record?.previous, where).toBe(model.ranBefore);
      }
    }
  });
});
