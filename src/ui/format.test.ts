// A time from a record is shown, never thrown on.
import { describe, expect, it } from "vitest";
import { formatEpochSeconds } from "./format.js";

describe("formatEpochSeconds", () => {
  it("shows a time as ISO 8601, and one no date can hold as such", () => {
    expect(formatEpochSeconds(1_790_000_000)).toBe("2026-09-21T14:13:20.000Z");
    expect(formatEpochSeconds(2 ** 53 - 1)).toBe("(an impossible time: 9007199254740991 s)");
  });
});
