import { describe, expect, it } from "vitest";
import { formatAgentEvent } from "./agent-events.js";

describe("formatAgentEvent", () => {
  it("says when a store error is retried, and only then", () => {
    expect(formatAgentEvent({ type: "store-error", message: "503 Slow Down", retryIn: 20 })).toBe(
      "store error: 503 Slow Down; retrying in 20s",
    );
    expect(
      formatAgentEvent({ type: "store-error", message: "reporting applying: 503 Slow Down" }),
    ).toBe("store error: reporting applying: 503 Slow Down");
  });

  it("prints warnings and failures with their reason", () => {
    expect(
      formatAgentEvent({
        type: "warning",
        message: "cannot read the host's current system: EACCES",
      }),
    ).toBe("warning: cannot read the host's current system: EACCES");
    expect(
      formatAgentEvent({
        type: "failed",
        seq: 4,
        message: "health check failed",
        rolledBack: true,
      }),
    ).toBe(
      "release 4 failed: health check failed (rolled back); not retried until a newer release",
    );
  });
});
