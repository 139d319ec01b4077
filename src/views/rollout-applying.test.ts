// An ssh host shows applying while the running rollout has it activating: its record
// is written only when it ends.
import { describe, expect, it } from "vitest";
import { rolloutRecord } from "../../test/support/rollout-records.js";
import { sshRecord } from "../../test/support/status-records.js";
import type { RolloutRecord } from "../status/rollout.js";
import { withRolloutApplying } from "./rollout-applying.js";
import { type StatusRow, storedRow } from "./status-rows.js";

const host = (name: string) =>
  ({ name, tags: [], address: undefined, delivery: "ssh" }) as unknown as Parameters<
    typeof storedRow
  >[0];
const rows: StatusRow[] = ["web1", "web2"].map((h) =>
  storedRow(host(h), { record: sshRecord({ host: h }) }),
);
const rollout = (state: RolloutRecord["state"]): RolloutRecord =>
  rolloutRecord(
    [
      { host: "web1", state: "activating", phase: "switch", system: null, message: null },
      { host: "web2", state: "pending", phase: null, system: null, message: null },
    ],
    { state },
  );

describe("hosts a running rollout applies", () => {
  it("shows a host the running rollout has activating as applying, at its step", () => {
    const shown = withRolloutApplying(
      rows,
      { status: "found", key: "k", record: rollout("running") },
      new Date("2026-11-26T07:00:30.000Z"),
    );
    expect(shown.map((r) => [r.host, (r as { state?: string }).state])).toEqual([
      ["web1", "applying"],
      ["web2", "success"],
    ]);
    // As of the rollout's last write, not of the deploy before it.
    expect(shown[0]).toMatchObject({ phase: "switch", updatedAt: "2026-11-26T07:00:01.000Z" });
    expect(shown[1]).toBe(rows[1]);
  });

  it("names the system the rollout applies, since the rollout began, not the deploy before's", () => {
    const hang = "/nix/store/33333333333333333333333333333333-web-hang";
    const record = rolloutRecord(
      [{ host: "web1", state: "activating", phase: "switch", system: hang, message: null }],
      { state: "running" },
    );
    const shown = withRolloutApplying(
      rows,
      { status: "found", key: "k", record },
      new Date("2026-11-26T07:00:30.000Z"),
    );
    expect(shown[0]).toMatchObject({
      state: "applying",
      desired: hang,
      startedAt: record.startedAt,
    });
  });

  it("shows no failure of the deploy before on a host it applies", () => {
    const failedBefore = storedRow(host("web1"), {
      record: sshRecord({ host: "web1", state: "failed", error: "health: 500", rolledBack: true }),
    });
    const [shown] = withRolloutApplying(
      [failedBefore],
      { status: "found", key: "k", record: rollout("running") },
      new Date("2026-11-26T07:00:30.000Z"),
    );
    expect(shown).toMatchObject({ state: "applying", error: null, rolledBack: null });
  });

  it("leaves the rows as they are once the rollout ended, or without one", () => {
    expect(
      withRolloutApplying(rows, { status: "found", key: "k", record: rollout("failed") }),
    ).toBe(rows);
    expect(withRolloutApplying(rows, { status: "none" })).toBe(rows);
  });

  it("leaves them once a running rollout's deployer stopped writing its record (killed)", () => {
    const found = { status: "found", key: "k", record: rollout("running") } as const;
    // Written at 07:00:01: applying while a live deployer would have written it since (every
    // heartbeat), not once three heartbeats passed unwritten (its hosts went back long before).
    expect(withRolloutApplying(rows, found, new Date("2026-11-26T07:02:30.000Z"))).not.toBe(rows);
    expect(withRolloutApplying(rows, found, new Date("2026-11-26T07:03:30.000Z"))).toBe(rows);
    expect(withRolloutApplying(rows, found, new Date("2026-11-26T07:16:00.000Z"))).toBe(rows);
  });
});
