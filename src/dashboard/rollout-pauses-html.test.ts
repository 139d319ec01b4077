// The rollout page of a paused rollout: the pause, its deadline and the commands, hosts of the
// waves after it still pending (not "not started"); and of a rollout whose pause ended.
import { describe, expect, it } from "vitest";
import type { RolloutRecord } from "../status/rollout.js";
import { rolloutMain } from "./rollout-page.js";

const SYS = `/nix/store/${"a".repeat(32)}-example-web-system-v2`;
const host = (name: string, state: "pending" | "confirmed") => ({
  host: name,
  state,
  phase: null,
  system: SYS,
  message: null,
});
const PAUSE = {
  afterWave: 1,
  since: "2026-11-26T07:00:05.000Z",
  until: "2026-11-26T08:00:05.000Z",
  onTimeout: "abort" as const,
};
const PAUSED: RolloutRecord = {
  version: 1,
  id: "0123456789ab",
  mode: "ssh",
  action: "switch",
  state: "paused",
  stopped: null,
  waves: [
    { index: 1, kind: "canary", hosts: [host("web1", "confirmed")] },
    { index: 2, kind: "main", hosts: [host("web2", "pending")] },
  ],
  pauses: [PAUSE],
  startedAt: "2026-11-26T07:00:00.000Z",
  updatedAt: "2026-11-26T07:00:05.000Z",
};
const page = (record: RolloutRecord, now: string) =>
  String(rolloutMain({ status: "found", record } as never, null, new Date(now)));

describe("the rollout page of a paused rollout", () => {
  it("says it waits, until when and then what, and the commands that answer it", () => {
    // Two minutes after its last write: a paused deployer writes its record every heartbeat.
    const html = page(PAUSED, "2026-11-26T07:02:00.000Z");
    expect(html).toContain('<span class="badge behind">paused</span>');
    expect(html).toContain(
      "waiting for an operator until 2026-11-26T08:00:05.000Z; then it aborts",
    );
    expect(html).toContain("<code>nixship rollout resume 0123456789ab</code>");
    expect(html).toContain("<code>nixship rollout abort 0123456789ab</code>");
    expect(html).toMatch(/data-host="web2">.*<span class="badge pending">pending<\/span>/);
  });

  it("shows it ended where it was last written once its deployer went quiet, as its hosts are judged", () => {
    const html = page(PAUSED, "2026-11-26T07:10:00.000Z");
    expect(html).toContain('<span class="badge failed">interrupted</span>');
    expect(html).toContain("its deploy has not written it for more than 3 minutes");
    expect(html).not.toContain("nixship rollout resume");
  });

  it("says the deploy is gone when the deadline passed long ago with no outcome", () => {
    expect(page(PAUSED, "2026-11-26T09:00:00.000Z")).toContain("its deploy is gone");
  });

  it("says who aborted a rollout, and when", () => {
    const aborted: RolloutRecord = {
      ...PAUSED,
      state: "aborted",
      stopped: "aborted by ops@laptop",
      pauses: [
        { ...PAUSE, answer: { action: "abort", by: "ops@laptop", at: "2026-11-26T07:20:00.000Z" } },
      ],
    };
    const html = page(aborted, "2026-11-26T07:30:00.000Z");
    expect(html).toContain("aborted by ops@laptop at 2026-11-26T07:20:00.000Z");
    expect(html).toContain('<span class="badge failed">aborted</span>');
  });
});
