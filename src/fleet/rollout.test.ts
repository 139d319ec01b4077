import { describe, expect, it } from "vitest";
import { planWaves, shouldStop, shouldStopAfterWave } from "./rollout.js";

const hosts = (n: number) => Array.from({ length: n }, (_, i) => `h${i + 1}`);
const shape = (n: number, canary: number, parallel: number) =>
  planWaves(hosts(n), { canary, parallel }).map((w) => `${w.kind}:${w.hosts.join("+")}`);

describe("planWaves", () => {
  it("runs the canary first, then waves of at most parallel", () => {
    expect(shape(7, 1, 3)).toEqual(["canary:h1", "main:h2+h3+h4", "main:h5+h6+h7"]);
    expect(planWaves(hosts(4), { canary: 1, parallel: 2 }).map((w) => w.index)).toEqual([0, 1, 2]);
  });

  it("has no canary wave with canary 0", () => {
    expect(shape(5, 0, 2)).toEqual(["main:h1+h2", "main:h3+h4", "main:h5"]);
  });

  it("makes every host a canary when canary covers them all", () => {
    expect(shape(3, 3, 10)).toEqual(["canary:h1+h2+h3"]);
    expect(shape(3, 8, 10)).toEqual(["canary:h1+h2+h3"]);
  });

  it("splits a canary larger than parallel, so no wave exceeds parallel", () => {
    expect(shape(5, 3, 2)).toEqual(["canary:h1+h2", "canary:h3", "main:h4+h5"]);
  });

  it("deploys one host at a time with parallel 1", () => {
    expect(shape(3, 1, 1)).toEqual(["canary:h1", "main:h2", "main:h3"]);
  });

  it("plans nothing for no hosts", () => {
    expect(planWaves([], { canary: 1, parallel: 10 })).toEqual([]);
  });

  it("with a policy per role, takes each wave's share of every role by that role's numbers", () => {
    // api: a canary of 1, then 2 at a time; worker: no canary, 3 at a time.
    const roles = ["api1", "w1", "api2", "w2", "api3", "w3", "w4", "api4", "w5"];
    const waves = planWaves(roles, { canary: 1, parallel: 10 }, (h) =>
      h.startsWith("api") ? { canary: 1, parallel: 2 } : { canary: 0, parallel: 3 },
    ).map((w) => `${w.kind}:${w.hosts.join("+")}`);
    expect(waves).toEqual(["canary:api1", "main:api2+api3+w1+w2+w3", "main:api4+w4+w5"]);
    // One role: the plain plan.
    expect(
      planWaves(hosts(7), { canary: 1, parallel: 3 }, () => ({ canary: 1, parallel: 3 })),
    ).toEqual(planWaves(hosts(7), { canary: 1, parallel: 3 }));
    expect(() =>
      planWaves(hosts(2), { canary: 1, parallel: 2 }, () => ({ canary: 0, parallel: 0 })),
    ).toThrow(/parallel must be/);
  });

  it("gives each role its own canaries, even when two roles share their numbers", () => {
    // Two roles with canary 1 and parallel 2 each: one canary of each in the first wave.
    const hosts = ["api1", "db1", "api2", "db2", "api3"];
    const role = (h: string) => ({ canary: 1, parallel: 2, role: h.slice(0, -1) });
    const waves = planWaves(hosts, { canary: 1, parallel: 2 }, role).map(
      (w) => `${w.kind}:${w.hosts.join("+")}`,
    );
    expect(waves).toEqual(["canary:api1+db1", "main:api2+api3+db2"]);
  });

  it("refuses a policy that would never finish", () => {
    expect(() => planWaves(hosts(2), { canary: 1, parallel: 0 })).toThrow(/parallel must be/);
    expect(() => planWaves(hosts(2), { canary: -1, parallel: 1 })).toThrow(/canary must be/);
    expect(() => planWaves(hosts(2), { canary: 1, parallel: 0.5 })).toThrow(/parallel must be/);
  });
});

describe("shouldStop", () => {
  it("stops once failures exceed maxFailures", () => {
    expect(shouldStop(0, { maxFailures: 0 })).toBe(false);
    expect(shouldStop(1, { maxFailures: 0 })).toBe(true);
    expect(shouldStop(2, { maxFailures: 2 })).toBe(false);
    expect(shouldStop(3, { maxFailures: 2 })).toBe(true);
  });

  it("stops after any failed canary, whatever the budget", () => {
    const policy = { maxFailures: 5 };
    expect(shouldStopAfterWave({ kind: "canary" }, 1, 1, policy)).toBe(true);
    expect(shouldStopAfterWave({ kind: "canary" }, 0, 0, policy)).toBe(false);
    expect(shouldStopAfterWave({ kind: "main" }, 1, 1, policy)).toBe(false);
    expect(shouldStopAfterWave({ kind: "main" }, 3, 6, policy)).toBe(true);
  });
});
