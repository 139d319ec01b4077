import { describe, expect, it } from "vitest";
import { interruptReason } from "./interrupt-reason.js";

const aborted = (reason?: unknown) => {
  const c = new AbortController();
  c.abort(reason);
  return c.signal;
};

describe("interruptReason", () => {
  it("says the trap's reason once, whatever layer meets it", () => {
    expect(interruptReason(aborted("interrupted (SIGINT)"))).toBe("interrupted (SIGINT)");
    expect(interruptReason(aborted("SIGTERM"))).toBe("interrupted (SIGTERM)");
    expect(interruptReason(aborted(new Error("the deadline passed")))).toBe(
      "interrupted (the deadline passed)",
    );
    // No reason given: Node's own AbortError says nothing worth repeating.
    expect(interruptReason(aborted())).toBe("interrupted");
    expect(interruptReason(undefined)).toBe("interrupted");
  });
});
