// /metrics' newest rollout, from a snapshot alone: its state and its hosts by state, as the
// rollout page shows them.
import { describe, expect, it } from "vitest";
import { rolloutRecord } from "../../test/support/rollout-records.js";
import type { RolloutHost, RolloutRecord } from "../status/rollout.js";
import { dashboardMetrics } from "./metrics.js";
import type { FleetPoller } from "./poller.js";

const SYS = `/nix/store/${"a".repeat(32)}-example-web-system-v2`;
const host = (name: string, state: RolloutHost["state"]): RolloutHost => ({
  host: name,
  state,
  phase: state === "activating" ? "switch" : null,
  system: SYS,
  message: null,
});

/** The non-zero values of the `nixship_rollout_*` gauges, by their labels, for `record` at `at`. */
async function rolloutMetrics(record: RolloutRecord, at: string): Promise<string[]> {
  const snapshot = {
    version: 1,
    at,
    rows: [],
    tags: new Map(),
    channels: [],
    rollout: { status: "found", key: "k", record },
    futureRollout: null,
    warnings: [],
  };
  const poller = { snapshot, polls: 1, requests: { list: 0, get: 0, head: 0 } };
  const { registry } = dashboardMetrics(poller as unknown as FleetPoller, () => undefined);
  const text = await registry.metrics();
  return text
    .split("\n")
    .filter((l) => /^nixship_rollout_(state|hosts)\{/.test(l) && !l.endsWith(" 0"));
}

describe("/metrics' newest rollout", () => {
  it("counts a rollout whose deployer stopped writing it as interrupted, its hosts as it left them", async () => {
    const killed = rolloutRecord([], {
      waves: [
        { index: 1, kind: "main", hosts: [host("web1", "activating")] },
        { index: 2, kind: "main", hosts: [host("web2", "pending")] },
      ],
      updatedAt: "2026-11-26T07:00:01.000Z",
    });
    expect(await rolloutMetrics(killed, "2026-11-26T08:00:00.000Z")).toEqual([
      'nixship_rollout_state{state="interrupted"} 1',
      'nixship_rollout_hosts{state="failed"} 1',
      'nixship_rollout_hosts{state="not-started"} 1',
    ]);
    // Written a minute ago, it runs.
    expect(await rolloutMetrics(killed, "2026-11-26T07:01:00.000Z")).toEqual([
      'nixship_rollout_state{state="running"} 1',
      'nixship_rollout_hosts{state="pending"} 1',
      'nixship_rollout_hosts{state="activating"} 1',
    ]);
  });

  it("counts the hosts it left alone with those of its waves", async () => {
    const partial = rolloutRecord([host("web1", "confirmed")], {
      state: "partial",
      skipped: [host("web2", "unreachable"), host("web3", "up-to-date")],
    });
    expect(await rolloutMetrics(partial, "2026-11-26T07:01:00.000Z")).toEqual([
      'nixship_rollout_state{state="partial"} 1',
      'nixship_rollout_hosts{state="confirmed"} 1',
      'nixship_rollout_hosts{state="unreachable"} 1',
      'nixship_rollout_hosts{state="up-to-date"} 1',
    ]);
  });
});
