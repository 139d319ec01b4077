import { describe, expect, it } from "vitest";
import { pausedRolloutLine, pauseLine } from "./pause-lines.js";
import { formatPlanPauses, waitText } from "./plan-pauses-format.js";

const paused = {
  type: "paused" as const,
  rollout: "0123456789ab",
  afterWave: 1,
  kind: "canary" as const,
  since: "2026-11-25T10:00:00.000Z",
  until: "2026-11-25T11:00:00.000Z",
  onTimeout: "abort" as const,
  resume: "nixship rollout resume 0123456789ab",
  abort: "nixship rollout abort 0123456789ab",
  store: "s3://cache/nix",
};

describe("what a pause says", () => {
  it("on the terminal: that it waits, for whom, until when and then what", () => {
    expect(pauseLine(paused)).toBe(
      [
        "paused after wave 1 (the canary): rollout 0123456789ab waits for an operator until 2026-11-25T11:00:00.000Z, then abort (roll back)",
        "  to go on:                    nixship rollout resume 0123456789ab",
        "  to stop and roll back:       nixship rollout abort 0123456789ab",
        "  (from any machine with the fleet, or with --store s3://cache/nix)",
      ].join("\n"),
    );
    const ended = {
      type: "pause-ended" as const,
      rollout: "0123456789ab",
      afterWave: 1,
      by: "ops@x",
      at: "T",
    };
    expect(pauseLine({ ...ended, action: "resume" })).toBe("resumed after wave 1 by ops@x at T");
    expect(pauseLine({ ...ended, action: "abort", timedOut: true })).toBe(
      "nobody answered the pause after wave 1 by T: aborting, its default",
    );
  });

  it("in status: the commands that answer it", () => {
    const p = {
      id: "0123456789ab",
      mode: "ssh" as const,
      by: "ci",
      startedAt: paused.since,
      pause: {
        afterWave: 1,
        since: paused.since,
        until: paused.until,
        onTimeout: "resume" as const,
      },
    };
    expect(pausedRolloutLine(p)).toBe(
      "rollout 0123456789ab is paused after wave 1 since 2026-11-25T10:00:00.000Z, started by ci: 'nixship rollout resume 0123456789ab' lets it go on, 'nixship rollout abort 0123456789ab' stops it and rolls back the hosts it changed (at 2026-11-25T11:00:00.000Z it will resume by itself)",
    );
    // Answered, and not taken yet: no command to answer it again.
    expect(
      pausedRolloutLine({
        ...p,
        answer: { rollout: p.id, afterWave: 1, action: "abort", by: "ops@x", at: "T" },
      }),
    ).toBe(
      "rollout 0123456789ab is paused after wave 1 since 2026-11-25T10:00:00.000Z, started by ci: its pause was answered (abort by ops@x at T), and its deploy has not taken the answer yet (a deploy that is there takes it within seconds; one that has not within 120 s is gone, and 'nixship rollback --rollout 0123456789ab' then puts back what it changed)",
    );
    // With the --fleet the command was given, each command runs as printed.
    expect(pausedRolloutLine(p, "/srv/f.json")).toContain(
      "'nixship rollout resume 0123456789ab --fleet /srv/f.json' lets it go on, 'nixship rollout abort 0123456789ab --fleet /srv/f.json' stops it",
    );
  });

  it("in the plan: each pause, and each entry that makes none, with why", () => {
    expect(
      formatPlanPauses({
        pauses: [{ afterWave: 1, kind: "canary", timeout: 5400, onTimeout: "resume" }],
        unusedPauses: [{ after: 4, why: "the plan has 2 waves" }],
      }),
    ).toEqual([
      "pauses:",
      "  after wave 1 (canary): waits for 'nixship rollout resume ID' or 'nixship rollout abort ID' (the deploy names ID), at most 1h30m, then resume",
      "  pauseAfter 4: no pause (the plan has 2 waves)",
    ]);
    expect(formatPlanPauses({})).toEqual([]);
    expect([30, 600, 3600, 604800].map(waitText)).toEqual(["30s", "10m", "1h", "7d"]);
  });
});
