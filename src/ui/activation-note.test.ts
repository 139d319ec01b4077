import { describe, expect, it } from "vitest";
import { activationNote } from "./activation-note.js";

const NOW = new Date("2026-11-22T14:05:00Z");
const base = {
  command: "activate /nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-example-web-system-hang",
  path: "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-example-web-system-hang",
  pid: 412,
  since: Date.parse("2026-11-22T14:02:10Z") / 1000,
  deadline: Date.parse("2026-11-22T14:12:10Z") / 1000,
  stale: false,
};

describe("activationNote", () => {
  it("names the system, since when and the deadline", () => {
    expect(activationNote(base, NOW)).toBe(
      "activating example-web-system-hang since 14:02:10Z, deadline 14:12:10Z",
    );
  });

  it("gives the date of a time on another day", () => {
    expect(activationNote({ ...base, since: Date.parse("2026-11-21T23:59:00Z") / 1000 }, NOW)).toBe(
      "activating example-web-system-hang since 2026-11-21T23:59:00Z, deadline 14:12:10Z",
    );
  });

  it("says a stale lock is taken over by the next deploy", () => {
    expect(activationNote({ ...base, stale: true }, NOW)).toBe(
      "stale lock: activating example-web-system-hang since 14:02:10Z (pid 412); the next deploy or rollback takes it over and rolls it back",
    );
  });

  it("falls back to the command for a lock without a path (a confirmation window)", () => {
    expect(
      activationNote(
        { ...base, path: null, command: "confirmation window t1", deadline: null },
        NOW,
      ),
    ).toBe("confirmation window t1 since 14:02:10Z");
  });
});
