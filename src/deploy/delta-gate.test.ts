import { describe, expect, it } from "vitest";
import type { DeployRequest } from "../host/session-request.js";
import { fastLinkSeen, waitForDeltas, wholeRequests, withReadyDeltas } from "./delta-gate.js";
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

  it("waits as long as the pending bytes take whole at the pace seen, less their rebuilding, on a slow link", async () => {
    const { calls, deltas } = worker();
    const events: DeployEvent[] = [];
    // 50 MB: 5 s whole at 10 MB/s, 2 s rebuilt from deltas at 25 MB/s; waiting 3 s and then
    // rebuilding takes as long as fetching whole at once.
    await waitForDeltas(
      deltas,
      {
        bytesPerSecond: () => 10_000_000,
        rebuiltBytesPerSecond: () => 25_000_000,
        favoursWhole: () => false,
      },
      wave,
      (e) => events.push(e),
    );
    expect(calls).toEqual(["settled 3000"]);
    expect(events).toEqual([
      {
        type: "deltas-wait",
        wave: 2,
        pendingBytes: 50_000_000,
        bytesPerSecond: 10_000_000,
        rebuiltBytesPerSecond: 25_000_000,
        seconds: 3,
      },
    ]);
  });

  it("does not wait where rebuilding from deltas would take as long as fetching whole", async () => {
    const { calls, deltas } = worker();
    const events: DeployEvent[] = [];
    await waitForDeltas(
      deltas,
      {
        bytesPerSecond: () => 10_000_000,
        rebuiltBytesPerSecond: () => 10_000_000,
        favoursWhole: () => false,
      },
      wave,
      (e) => events.push(e),
    );
    expect(calls).toEqual([]);
    expect(events).toEqual([]);
  });

  it("neither waits nor improves once whole fetches were seen faster than rebuilding by delta", async () => {
    const { calls, deltas } = worker();
    const events: DeployEvent[] = [];
    await waitForDeltas(
      deltas,
      {
        bytesPerSecond: () => 10_000_000,
        rebuiltBytesPerSecond: () => 25_000_000,
        favoursWhole: () => true,
      },
      wave,
      (e) => events.push(e),
    );
    expect(calls).toEqual(["stop-improving"]);
    expect(events).toEqual([]);
  });
});

describe("fastLinkSeen and wholeRequests", () => {
  it("says the link is fast when the last deploys' hosts fetched whole as fast as deltas rebuild", () => {
    const fast = { whole: { bytes: 100 * 1024 * 1024, seconds: 2 } };
    expect(fastLinkSeen(fast)).toBe(50 * 1024 * 1024);
    // Slower than a host rebuilds by delta, or too few bytes to judge by, or nothing seen.
    expect(fastLinkSeen({ whole: { bytes: 100 * 1024 * 1024, seconds: 60 } })).toBeUndefined();
    expect(fastLinkSeen({ whole: { bytes: 1024 * 1024, seconds: 0.01 } })).toBeUndefined();
    expect(
      fastLinkSeen({ ...fast, rebuilt: { bytes: 100 * 1024 * 1024, seconds: 1 } }),
    ).toBeUndefined();
    expect(fastLinkSeen(undefined)).toBeUndefined();
    expect(fastLinkSeen({})).toBeUndefined();
  });

  it("takes the delta tool out of every request, and nothing else", () => {
    const requests = new Map([
      ["a", request(TOOL)],
      ["b", request()],
    ]);
    const whole = wholeRequests(requests);
    expect(whole.get("a")?.deltaTool).toBeUndefined();
    expect(whole.get("a")).toEqual(request());
    expect(whole.get("b")).toEqual(request());
    expect(requests.get("a")?.deltaTool).toBe(TOOL);
  });
});
