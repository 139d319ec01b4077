import { describe, expect, it } from "vitest";
import { listWarnings, showWarnings } from "./release-warnings.js";

describe("release warnings", () => {
  it("release list: each malformed file's problem, in order", () => {
    expect(
      listWarnings([
        {
          status: "ok",
          seq: 1,
          created: "x",
          kind: "deploy",
          digest: "d1",
          hosts: 2,
          current: false,
        },
        {
          status: "malformed",
          seq: 2,
          digest: "d2",
          current: true,
          problem: "releases/p/2.json: bad",
        },
      ]),
    ).toEqual(["releases/p/2.json: bad"]);
  });

  it("release show: expired, a newer release, then unreadable records by host", () => {
    const release = { seq: 4, expires: "2026-01-01T00:00:00.000Z" };
    expect(
      showWarnings({ release, expired: false, newer: undefined, verified: true, unreadable: [] }),
    ).toEqual([]);
    const all = showWarnings({
      release,
      expired: true,
      newer: 6,
      verified: true,
      unreadable: [["web2", "not JSON"]],
    });
    expect(all).toEqual([
      "release 4 expired at 2026-01-01T00:00:00.000Z: agents refuse it; renew the channel with 'nixship release refresh'",
      "the channel names release 4, but release 6 exists and is signed by a trusted key: the channel was replayed or a publisher was interrupted; agents with no state refuse it until a new release moves the channel on",
      "web2: its status record is unreadable: not JSON",
    ]);
    const unverified = showWarnings({
      release,
      expired: false,
      newer: 6,
      verified: false,
      unreadable: [],
    });
    expect(unverified[0]).toContain("release 6 exists: the channel was replayed");
  });
});
