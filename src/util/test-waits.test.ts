import { describe, expect, it } from "vitest";
import { testWait } from "./test-waits.js";

describe("testWait", () => {
  it("is the product's own value unless the variable is set", () => {
    expect(testWait("NIXSHIP_STATUS_TIMEOUT", 60, 60, {})).toBe(60);
    expect(testWait("NIXSHIP_STATUS_TIMEOUT", 60, 60, { NIXSHIP_STATUS_TIMEOUT: "" })).toBe(60);
    expect(testWait("NIXSHIP_STATUS_TIMEOUT", 60, 60, { NIXSHIP_STATUS_TIMEOUT: "20" })).toBe(20);
    expect(testWait("NIXSHIP_SSM_POLL_MS", 2000, 2000, { NIXSHIP_SSM_POLL_MS: "0.5" })).toBe(0.5);
  });

  it("refuses what is not a number above 0 and at most the product's value, naming the variable", () => {
    for (const text of ["x", "0", "-1", "61", "Infinity"]) {
      expect(() =>
        testWait("NIXSHIP_STATUS_TIMEOUT", 60, 60, { NIXSHIP_STATUS_TIMEOUT: text }),
      ).toThrow(/^\$NIXSHIP_STATUS_TIMEOUT is ".*": it must be a number above 0 and at most 60/);
    }
  });
});
