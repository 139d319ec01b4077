// The line a deploy ends with: its rollout, and how to undo it where it changed a host that ran
// a system before it, with the flags the undo needs again.
import { describe, expect, it } from "vitest";
import type { DeployReport } from "../deploy/deploy-options.js";
import { againFlags, rolloutLine, unfinishedUndoLine } from "./roll-out.js";

const V1 = "/nix/store/11111111111111111111111111111111-web-v1";
const V2 = "/nix/store/22222222222222222222222222222222-web-v2";
const ID = "0123456789ab";

type Outcome = DeployReport["results"][number]["outcome"];

/** A report of hosts each with what it ran before (undefined: nothing nixship could name). */
function report(hosts: [string, string | undefined, Outcome][]): DeployReport {
  return {
    plan: { action: "switch", hosts: hosts.map(([host, current]) => ({ host, current })) },
    results: hosts.map(([host, , outcome]) => ({ host, desired: V2, outcome })),
  } as unknown as DeployReport;
}

const activated: Outcome = { status: "activated", generation: 2, previous: V1 };
const failed = (phase: "connect" | "health", rolledBack: boolean): Outcome =>
  ({ status: "failed", phase, message: "x", rolledBack }) as Outcome;

describe("the rollout line", () => {
  it("says how to undo a rollout that changed a host, with the flags given", () => {
    const line = rolloutLine(report([["web1", V1, activated]]), ID, " --fleet f.json --key k");
    expect(line).toBe(
      `rollout ${ID} (to undo it: nixship rollback --rollout ${ID} --fleet f.json --key k)`,
    );
    // A failure the host did not go back from changed it too.
    expect(rolloutLine(report([["web1", V1, failed("health", false)]]), ID, "")).toContain(
      "to undo it",
    );
  });

  it("names the rollout alone where no host changed: unreachable, or gone back", () => {
    const none = report([
      ["web1", V1, failed("connect", false)],
      ["web2", V1, failed("health", true)],
    ]);
    expect(rolloutLine(none, ID, "")).toBe(`rollout ${ID}`);
  });

  it("says there is nothing to undo it to where the hosts it changed ran nothing before", () => {
    expect(rolloutLine(report([["web1", undefined, activated]]), ID, "")).toBe(
      `rollout ${ID} (its hosts ran no system nixship could name before it: nothing to undo it to)`,
    );
  });

  it("gives --fleet, --key and --release-key as given, quoted", () => {
    expect(againFlags({ fleet: "my fleet.json", key: "k.sec", "release-key": "r.sec" })).toBe(
      " --fleet 'my fleet.json' --key k.sec --release-key r.sec",
    );
    expect(againFlags({})).toBe("");
  });
});

describe("the line a rollback that did not send back every host ends with", () => {
  it("names the hosts the undone rollout still stands for, and the command that finishes it", () => {
    const interrupted = report([
      ["web1", V2, activated],
      ["web2", V2, failed("connect", false)],
      ["web3", V2, { status: "skipped", reason: "not-started" } as Outcome],
      ["web4", V1, { status: "skipped", reason: "up-to-date" } as Outcome],
    ]);
    expect(unfinishedUndoLine(interrupted, ID, " --fleet f.json")).toBe(
      `rollout ${ID} still stands for web2, web3, which this rollback did not send back (to finish it: nixship rollback --rollout ${ID} --fleet f.json)`,
    );
    expect(unfinishedUndoLine(report([["web1", V2, activated]]), ID, "")).toBeUndefined();
  });

  it("names a host refused at its turn (changed since) apart, with what sends it back all the same", () => {
    const refused = { status: "skipped", reason: "refused", message: "changed since" } as Outcome;
    const raced = report([
      ["web1", V2, activated],
      ["web2", V2, refused],
      ["web3", V2, { status: "skipped", reason: "not-started" } as Outcome],
    ]);
    expect(unfinishedUndoLine(raced, ID, " --fleet f.json")).toBe(
      [
        `rollout ${ID} still stands for web3, which this rollback did not send back (to finish it: nixship rollback --rollout ${ID} --fleet f.json)`,
        `rollout ${ID} still stands for web2, changed since (refused at its turn): 'nixship rollback --rollout ${ID} --on web2 --force --fleet f.json' sends it back all the same`,
      ].join("\n"),
    );
  });
});
