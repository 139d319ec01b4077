import { describe, expect, it } from "vitest";
import type { ReleaseHead } from "../release/release.js";
import { headVerdict } from "./head-verdict.js";

const HEAD: ReleaseHead = {
  version: 1,
  channel: "prod",
  seq: 3,
  created: "2026-11-21T10:00:00.000Z",
  expires: "2026-11-28T10:00:00.000Z",
  previous: null,
  kind: "deploy",
  action: "switch",
  health: { http: [], commands: [] },
  confirmTimeout: 30,
};
const DIGEST = "sha256-aaaa";
/** While the release is valid. */
const VALID = new Date("2026-11-22T00:00:00.000Z");
const fresh = { lastSeq: null, lastDigest: null };

describe("headVerdict", () => {
  it("takes a newer release of its channel, and the first one a host with no state sees", () => {
    expect(headVerdict(HEAD, DIGEST, "prod", fresh, VALID)).toEqual({ kind: "take" });
    expect(
      headVerdict(HEAD, DIGEST, "prod", { lastSeq: 2, lastDigest: "sha256-old" }, VALID),
    ).toEqual({ kind: "take" });
  });

  it("leaves the release it applied, the same to the digest", () => {
    const last = { lastSeq: 3, lastDigest: DIGEST };
    expect(headVerdict(HEAD, DIGEST, "prod", last, VALID)).toEqual({ kind: "unchanged" });
  });

  it("holds the channel to a release whose activation began here and was interrupted", () => {
    const last = { lastSeq: 1, lastDigest: "sha256-one", interrupted: { seq: 3, digest: DIGEST } };
    // That release itself is taken (applied again, in full); a newer one too.
    expect(headVerdict(HEAD, DIGEST, "prod", last, VALID)).toEqual({ kind: "take" });
    expect(headVerdict({ ...HEAD, seq: 4 }, "sha256-four", "prod", last, VALID)).toEqual({
      kind: "take",
    });
    // An older one (a replay), or another of its number, is not.
    expect(headVerdict({ ...HEAD, seq: 2 }, "sha256-two", "prod", last, VALID)).toEqual({
      kind: "refuse",
      why: "release 2 is older than release 3, whose activation began here and was interrupted (a replay?)",
      seq: 2,
    });
    expect(headVerdict(HEAD, "sha256-other", "prod", last, VALID)).toEqual({
      kind: "refuse",
      why: "release 3 differs from the release 3 whose activation began here and was interrupted",
      seq: 3,
    });
  });

  it("refuses a release changed under the same number, or older than the last applied", () => {
    expect(
      headVerdict(HEAD, DIGEST, "prod", { lastSeq: 3, lastDigest: "sha256-b" }, VALID),
    ).toEqual({
      kind: "refuse",
      why: "release 3 differs from the release 3 already applied",
      seq: 3,
    });
    expect(headVerdict(HEAD, DIGEST, "prod", { lastSeq: 5, lastDigest: "x" }, VALID)).toEqual({
      kind: "refuse",
      why: "release 3 is older than release 5 already applied here (a replay?)",
      seq: 3,
    });
  });

  it("refuses another channel's release, filed under no number of this channel", () => {
    expect(headVerdict(HEAD, DIGEST, "staging", fresh, VALID)).toEqual({
      kind: "refuse",
      why: 'release 3 is for channel "prod", not "staging"',
      seq: undefined,
    });
  });

  it("refuses an expired release to take; the one already applied stays unchanged", () => {
    const after = new Date("2026-11-28T10:00:00.000Z");
    const verdict = headVerdict(HEAD, DIGEST, "prod", fresh, after);
    expect(verdict).toMatchObject({ kind: "refuse", seq: 3 });
    expect(verdict.kind === "refuse" && verdict.why).toMatch(
      /^release 3 of channel prod expired at /,
    );
    // The release already applied stays unchanged: expiry is judged only on a release to take.
    expect(headVerdict(HEAD, DIGEST, "prod", { lastSeq: 3, lastDigest: DIGEST }, after)).toEqual({
      kind: "unchanged",
    });
  });
});
