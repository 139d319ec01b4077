// The rollout page as the server renders it: every wave of the plan with its hosts
// not started yet, the hosts the rollout skipped and why, and who started it from what.
import { describe, expect, it } from "vitest";
import { rolloutRecord } from "../../test/support/rollout-records.js";
import type { RolloutRecord } from "../status/rollout.js";
import { rolloutMain } from "./rollout-page.js";

const SYS = `/nix/store/${"a".repeat(32)}-example-web-system-v2`;
const host = (
  name: string,
  state: "pending" | "confirmed" | "skipped",
  message: string | null = null,
) => ({
  host: name,
  state,
  phase: null,
  system: SYS,
  message,
});

const RECORD: RolloutRecord = rolloutRecord([], {
  waves: [
    { index: 1, kind: "canary", hosts: [host("web1", "confirmed")] },
    { index: 2, kind: "main", hosts: [host("web2", "pending")] },
  ],
  skipped: [host("db1", "skipped", "up to date"), host("db2", "skipped", "ssh: no route to host")],
  by: "alice@deployer",
  sources: [{ flake: "/src/fleet", rev: "b".repeat(40), dirty: true }],
  updatedAt: "2026-11-26T07:00:05.000Z",
});

describe("the rollout page", () => {
  it("lists a host not started, the skipped hosts with why, and who started it from what", () => {
    const page = String(
      rolloutMain({ status: "found", record: RECORD } as never, null, new Date(RECORD.updatedAt)),
    );
    expect(page).toContain('<tr class="pending" data-host="web2">');
    expect(page).toContain('<h2 id="skipped">Skipped</h2>');
    expect(page).toMatch(/data-host="db1">.*up to date/);
    expect(page).toMatch(/data-host="db2">.*ssh: no route to host/);
    expect(page).toContain(
      "Started by alice@deployer, from <code>/src/fleet</code> at <code>bbbbbbbbbbbb</code>",
    );
    expect(page).toContain("dirty");
  });

  it("says a host pending in a rollout that ended was not started (the rollout stopped first)", () => {
    const ended = { ...RECORD, state: "failed", stopped: "1 host failed (max failures: 0)" };
    const page = String(
      rolloutMain({ status: "found", record: ended } as never, null, new Date(RECORD.updatedAt)),
    );
    expect(page).toMatch(/data-host="web2">.*<span class="badge pending">not started<\/span>/);
    expect(page).toContain('<span class="badge pending">1 not started</span>');
    const running = String(
      rolloutMain({ status: "found", record: RECORD } as never, null, new Date(RECORD.updatedAt)),
    );
    expect(running).toMatch(/data-host="web2">.*<span class="badge pending">pending<\/span>/);
  });

  it("shows a rollout whose deployer stopped writing it as interrupted there, and why", () => {
    const killed: RolloutRecord = {
      ...RECORD,
      waves: [
        {
          index: 1,
          kind: "canary",
          hosts: [{ ...host("web1", "confirmed"), state: "activating" }],
        },
        { index: 2, kind: "main", hosts: [host("web2", "pending")] },
      ],
    };
    const page = String(
      rolloutMain(
        { status: "found", record: killed } as never,
        null,
        new Date("2026-11-26T08:00:00.000Z"),
      ),
    );
    expect(page).toContain('<span class="badge failed">interrupted</span>');
    expect(page).toContain(
      "Its record says running, but its deployer has not written it since 2026-11-26T07:00:05.000Z",
    );
    expect(page).toMatch(/data-host="web1">.*<span class="badge failed">failed<\/span>/);
    expect(page).toMatch(/data-host="web2">.*<span class="badge not-started">not started<\/span>/);
    expect(page).not.toContain(">activating<");
    expect(page).not.toContain(">running<");
  });

  it("says nothing of who started an older record that does not say", () => {
    const { by: _by, sources: _sources, skipped: _skipped, ...older } = RECORD;
    const page = String(
      rolloutMain({ status: "found", record: older } as never, null, new Date(RECORD.updatedAt)),
    );
    expect(page).not.toContain("Started by");
    expect(page).not.toContain("Skipped");
  });
});

describe("a rollback's rollout page", () => {
  it("names the rollout it undoes; a deploy's says nothing of it", () => {
    const undo = { ...RECORD, undoes: "0123456789ab" };
    const page = String(
      rolloutMain({ status: "found", record: undo } as never, null, new Date(RECORD.updatedAt)),
    );
    expect(page).toContain(
      '<p class="rollout-undoes">A rollback: it undoes rollout <code>0123456789ab</code>',
    );
    const deploy = String(
      rolloutMain({ status: "found", record: RECORD } as never, null, new Date(RECORD.updatedAt)),
    );
    expect(deploy).not.toContain("rollout-undoes");
  });
});
