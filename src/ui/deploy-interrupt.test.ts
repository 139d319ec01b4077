import { describe, expect, it } from "vitest";
import type { HostResult } from "../deploy/events.js";
import { formatFirstInterrupt, formatSecondInterrupt, HostsInFlight } from "./deploy-interrupt.js";

const done = (host: string): HostResult => ({
  host,
  desired: "/nix/store/x",
  seconds: 1,
  outcome: { status: "activated", generation: 2, previous: undefined },
});

describe("HostsInFlight", () => {
  it("follows the wave under way: hosts leave as they finish", () => {
    const t = new HostsInFlight();
    expect(t.hosts).toEqual([]);
    t.onEvent({ type: "wave-start", wave: 1, kind: "canary", hosts: ["a"] });
    t.onEvent({ type: "host-done", result: done("a") });
    t.onEvent({ type: "wave-start", wave: 2, kind: "main", hosts: ["b", "c"] });
    t.onEvent({ type: "host-phase", host: "b", phase: "switch", elapsed: 1 });
    t.onEvent({ type: "host-done", result: done("c") });
    expect(t.hosts).toEqual(["b"]);
  });
});

describe("the interrupt lines", () => {
  it("first: what stops, which hosts are aborted, and how to exit at once", () => {
    expect(formatFirstInterrupt("SIGINT", ["web1", "web2"])).toBe(
      "interrupted (SIGINT): starting no new host; aborting 2 hosts in flight (web1, web2), rolling them back to the previous system; press Ctrl-C again to exit at once",
    );
    expect(formatFirstInterrupt("SIGINT", ["web1"])).toContain(
      "aborting 1 host in flight (web1), rolling it back to the previous system",
    );
    expect(formatFirstInterrupt("SIGTERM", [])).toBe(
      "interrupted (SIGTERM): starting no new host and stopping; press Ctrl-C again to exit at once",
    );
  });

  it("second: what becomes of the hosts left in flight, by mode and window", () => {
    const policy = {
      confirmTimeout: 30,
      activationTimeout: 600,
      health: { http: [], commands: [] },
    };
    const ssh = { mode: "ssh", action: "switch", policy } as const;
    expect(formatSecondInterrupt("SIGINT", ["web1"], ssh)).toBe(
      "interrupted again (SIGINT): exiting now; web1 was still in flight: unless already confirmed, it rolls itself back, within its activation timeout (600s) if still switching, else when its confirmation window (30s) closes",
    );
    // With confirmation off, HTTP checks still get a window as long as they take plus 10 s
    // (activationSteps), and the line says so.
    const checked = {
      ...ssh,
      policy: {
        ...policy,
        confirmTimeout: 0,
        health: { http: [{ url: "http://h/", expectStatus: 200, timeout: 60 }], commands: [] },
      },
    };
    expect(formatSecondInterrupt("SIGINT", ["a", "b"], checked)).toContain(
      "a, b were still in flight: unless already confirmed, each rolls itself back, within its activation timeout (600s) if still switching, else when its confirmation window (70s) closes",
    );
    expect(
      formatSecondInterrupt("SIGINT", ["a"], { ...ssh, policy: { ...policy, confirmTimeout: 0 } }),
    ).toContain(
      "a was still in flight, with no confirmation window: it keeps what its activation ends with",
    );
    expect(formatSecondInterrupt("SIGINT", ["a"], { ...ssh, mode: "agent" })).toContain(
      "the agents carry on without the deployer",
    );
    expect(formatSecondInterrupt("SIGINT", ["a"], { ...ssh, mode: "ssm" })).toContain(
      "the SSM command goes on on the host",
    );
    // SSM hosts' status is what they last reported: the plan asks them.
    expect(formatSecondInterrupt("SIGINT", ["a"], { ...ssh, mode: "ssm" })).toContain(
      "('nixship plan' asks it what it runs; 'nixship status' reads what the hosts last reported)",
    );
    expect(formatSecondInterrupt("SIGINT", [], ssh)).toBe(
      "interrupted again (SIGINT): exiting now; no host was in flight",
    );
  });
});

describe("a second interrupt while a wave bakes", () => {
  it("names the hosts baking, or being rolled back after a failed bake, not 'no host in flight'", () => {
    const tracker = new HostsInFlight();
    tracker.onEvent({ type: "wave-start", wave: 1, kind: "main", hosts: ["web1", "web2"] });
    for (const host of ["web1", "web2"]) {
      tracker.onEvent({
        type: "host-done",
        result: {
          host,
          desired: "/nix/store/x",
          seconds: 1,
          outcome: { status: "activated", generation: 2, previous: undefined },
        },
      });
    }
    tracker.onEvent({
      type: "bake-start",
      wave: 1,
      hosts: ["web1", "web2"],
      seconds: 60,
      interval: 10,
      analysis: [],
    });
    tracker.onEvent({ type: "bake-done", host: "web1", ok: true, seconds: 60 });
    expect(tracker.hosts).toEqual([]);
    expect(tracker.baking).toEqual(["web2"]);
    const ssh = {
      mode: "ssh",
      action: "switch",
      policy: { confirmTimeout: 30, activationTimeout: 600, health: { http: [], commands: [] } },
    } as const;
    expect(formatSecondInterrupt("SIGINT", tracker.hosts, ssh, tracker.baking)).toBe(
      "interrupted again (SIGINT): exiting now; web2 was baking (confirmed: the new system stays), or being rolled back after a failed bake (that goes on on the host): 'nixship status' shows where each ends",
    );
  });
});
