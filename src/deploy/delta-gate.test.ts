import { describe, expect, it } from "vitest";
import type { DeployRequest } from "../host/session-request.js";
import { waitForDeltas, withReadyDeltas } from "./delta-gate.js";
import type { DeployEvent } from "./events.js";

const request = (deltaTool?: string) =>
  ({
    path: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-system",
    action: "switch",
    substituters: ["http://cache"],
    trustedKeys: [],
    commandChecks: [],
    httpChecks: [],
    ...(deltaTool === undefined ? {} : { deltaTool }),
  }) as unknown as DeployRequest;

const TOOL = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-zstd";

describe("withReadyDeltas", () => {
  const input = {
    requests: new Map([
      ["ready", request(TOOL)],
      ["pending", request(TOOL)],
      ["off", request()],
    ]),
    plan: {},
  };
  const deltas = { hasDeltas: (host: string) => host === "ready" };

  it("gives the tool to a host with deltas published while whole fetches are not seen faster", () => {
    const gate = withReadyDeltas(input, deltas, { favoursWhole: () => false });
    expect(gate.get("ready")?.deltaTool).toBe(TOOL);
    expect(gate.get("pending")?.deltaTool).toBeUndefined();
    expect(gate.get("off")?.deltaTool).toBeUndefined();
  });

  it("gives no host the tool once whole fetches were seen faster than rebuilding by delta", () => {
    let whole = false;
    const gate = withReadyDeltas(input, deltas, { favoursWhole: () => whole });
    expect(gate.get("ready")?.deltaTool).toBe(TOOL);
    whole = true;
    const fetched = gate.get("ready");
    expect(fetched?.deltaTool).toBeUndefined();
    expect(fetched?.path).toBe(input.requests.get("ready")?.path);
  });
});

describe("waitForDeltas", () => {
  const worker = () => {
    const calls: string[] = [];
    return {
      calls,
      deltas: {
        stopImproving: () => calls.push("stop-improving"),
        pendingBytes: () => 50_000_000,
        settled: async (_hosts: readonly string[], ms: number) => {
          calls.push(`settled ${ms}`);
        },
      },
    };
  };
  const wave = { wave: 2, hosts: ["b"], last: false };

  it("waits as long as the pending bytes take whole at the pace seen, on a slow link", async () => {
    const { calls, deltas } = worker();
    const events: DeployEvent[] = [];
    await waitForDeltas(
      deltas,
      { bytesPerSecond: () => 10_000_000, favoursWhole: () => false },
      wave,
      (e) => events.push(e),
    );
    expect(calls).toEqual(["settled 5000"]);
    expect(events.map((e) => e.type)).toEqual(["deltas-wait"]);
  });

  it("neither waits nor improves once whole fetches were seen faster than rebuilding by delta", async () => {
    const { calls, deltas } = worker();
    const events: DeployEvent[] = [];
    await waitForDeltas(
      deltas,
      { bytesPerSecond: () => 10_000_000, favoursWhole: () => true },
      wave,
      (e) => events.push(e),
    );
    expect(calls).toEqual(["stop-improving"]);
    expect(events).toEqual([]);
  });
});
