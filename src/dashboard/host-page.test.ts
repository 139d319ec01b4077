// The host page's results say what they cover: the newest rollouts only, while the rollout a
// host is behind may be older (the asks read further back).
import { describe, expect, it } from "vitest";
import type { StatusRow } from "../views/status-rows.js";
import { hostMain } from "./pages.js";

const SYS = `/nix/store/${"a".repeat(32)}-example-web-system-v2`;
const now = new Date("2026-11-26T07:00:00.000Z");

const row = {
  host: "web2",
  mode: "ssh",
  source: "stored",
  inStep: false,
  reported: true,
  state: "success",
  current: SYS,
  behindRollout: {
    wants: SYS,
    rollout: "a00000000000",
    at: "2026-11-25T07:00:00.000Z",
    why: "skipped as unreachable: ssh: timeout",
  },
} as unknown as StatusRow;

const page = (r: StatusRow) =>
  String(hostMain({ row: r, tags: [], history: [], change: { status: "none", why: "-" } }, now));

describe("the host page's results", () => {
  it("say none of the newest rollouts names a host behind an older one, and name that one", () => {
    const html = page(row);
    expect(html).toContain("<dt>Behind</dt>");
    expect(html).not.toContain("No recorded rollout names this host");
    expect(html).toContain(
      "None of the newest 20 rollouts names this host. The rollout it is behind, <code>a00000000000</code>, is older than those.",
    );
    const { behindRollout: _behind, ...inStep } = row as StatusRow & { behindRollout?: unknown };
    expect(page(inStep as StatusRow)).toMatch(
      /None of the newest 20 rollouts names this host\.<\/p>/,
    );
  });

  it("name the rollout a host failed in as such, not as one it is behind", () => {
    const told = {
      ...row,
      state: "failed",
      rolledBack: true,
      behindRollout: { ...(row as { behindRollout: object }).behindRollout, failed: true },
    } as unknown as StatusRow;
    const html = page(told);
    expect(html).toContain("<dt>Failed in</dt>");
    expect(html).toContain("rollout <code>a00000000000</code>");
    expect(html).not.toContain("<dt>Behind</dt>");
  });

  it("name the rollout a host failed in once a rollback undid it, and say so", () => {
    const { behindRollout: _behind, ...rest } = row as StatusRow & { behindRollout?: unknown };
    const undone = {
      ...rest,
      state: "failed",
      rolledBack: true,
      failureUndone: "b00000000000",
    } as unknown as StatusRow;
    const html = page(undone);
    expect(html).toContain(
      "<dt>Failed in</dt><dd>rollout <code>b00000000000</code>, undone since: it runs what it ran before</dd>",
    );
  });
});
