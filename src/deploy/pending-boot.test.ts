// A pending boot read from a host's status (whether the host rebooted since it was set), and the
// line a deploy says first about it.
import { describe, expect, it } from "vitest";
import type { HostPlan } from "../fleet/plan.js";
import type { HostStatus } from "../host/script-outcomes.js";
import type { StorePath } from "../nix/store-path.js";
import { pendingBootLine, pendingBootOf } from "./pending-boot.js";

const v1 = "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web-v1" as StorePath;
const v2 = "/nix/store/1c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web-v2" as StorePath;

/** A host that runs `booted`, in boot `bootId`, with v2 set to boot next in boot `setIn`. */
function status(booted: StorePath, bootId: string, setIn: string | undefined): HostStatus {
  return {
    reachable: true,
    current: booted,
    booted,
    profile: v2,
    generation: 2,
    generations: [],
    pending: undefined,
    boot: {
      id: bootId,
      assessment: "clean",
      pending: {
        token: "b1",
        path: v2,
        since: 1700,
        generation: 2,
        previous: v1,
        ...(setIn === undefined ? {} : { bootId: setIn }),
      },
    },
  };
}

describe("pendingBootOf", () => {
  it("tells a host that has not rebooted since its boot was set from one that has", () => {
    expect(pendingBootOf(status(v1, "boot-a", "boot-a"))).toMatchObject({
      path: v2,
      booted: false,
      rebooted: false,
    });
    expect(pendingBootOf(status(v1, "boot-b", "boot-a"))).toMatchObject({
      booted: false,
      rebooted: true,
    });
    expect(pendingBootOf(status(v2, "boot-b", "boot-a"))).toMatchObject({
      booted: true,
      rebooted: true,
    });
    // An older script records no boot: unknown.
    expect(pendingBootOf(status(v1, "boot-a", undefined))).not.toHaveProperty("rebooted");
  });
});

describe("pendingBootLine", () => {
  const host = (pendingBoot: HostPlan["pendingBoot"]) => ({
    current: v1,
    desired: v2,
    pendingBoot,
  });
  const pending = { token: "b1", path: v2, since: 1700, generation: 2, previous: v1 };

  it("says a boot not rebooted into is replaced, naming what the host runs", () => {
    const line = pendingBootLine(
      host({
        ...pending,
        booted: false,
        rebooted: false,
        decision: "replace",
        reason: "not-rebooted",
      }),
      "switch",
    );
    expect(line).toBe(
      `the boot into generation 2 (${v2}) that an earlier deploy set is pending, but the host has not rebooted since: it runs ${v1}; this activation replaces it`,
    );
    // A host with none: nothing to say.
    expect(pendingBootLine(host(undefined), "switch")).toBeUndefined();
  });

  it("says a boot the host booted is judged first", () => {
    const line = pendingBootLine(
      { ...host({ ...pending, booted: true, rebooted: true, decision: "judge" }), current: v2 },
      "switch",
    );
    expect(line).toMatch(/^judging first the boot into generation 2 .* the host booted it$/);
  });
});
