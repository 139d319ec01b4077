// What a host's status answer may not carry: a time no view can show, a token the deployer
// never makes (SSM's parameters refuse it, which would fail the host's whole wave), or control
// characters in its pinned trust. Each is that host's malformed answer, named.
import { describe, expect, it } from "vitest";
import { MAX_EPOCH_SECONDS } from "../util/epoch.js";
import { checkActivationResult } from "./activation-result.js";

const path = "/nix/store/00000000000000000000000000000000-nixos-system-web1";

const status = (extra: Record<string, unknown>) => ({
  ok: true,
  command: "status",
  current: path,
  booted: path,
  profile: path,
  generation: 3,
  generations: [{ generation: 3, path }],
  pending: null,
  activation: null,
  ...extra,
});

const pendingBoot = (pending: Record<string, unknown>) => ({
  boot: { id: "b1", assessment: null, pending: { token: "s1abc", path, since: 1, ...pending } },
});

const problem = (value: unknown) => {
  const checked = checkActivationResult(value);
  return "problem" in checked ? checked.problem : undefined;
};

describe("a host's status answer", () => {
  it("takes times up to the year 9999 and tokens of the deployer's form", () => {
    expect(problem(status(pendingBoot({ since: MAX_EPOCH_SECONDS })))).toBeUndefined();
    expect(
      problem(status({ failed: { path, since: 1_790_000_000, reason: "x" } })),
    ).toBeUndefined();
  });

  it.each([
    ["a pending boot's", pendingBoot({ since: MAX_EPOCH_SECONDS + 1 })],
    ["a failed system's", { failed: { path, since: 2 ** 53 - 1, reason: "x" } }],
    [
      "an activation's",
      {
        activation: {
          command: "activate",
          path,
          pid: 1,
          since: 2 ** 53 - 1,
          deadline: null,
          stale: false,
        },
      },
    ],
  ])("refuses %s time past what a date can show", (_, extra) => {
    expect(problem(status(extra))).toMatch(/since is not a time in seconds or null/);
  });

  it("refuses a pending boot's token that is not of the deployer's form", () => {
    expect(problem(status(pendingBoot({ token: "x y" })))).toMatch(
      /token is not a token of letters, digits, '-' or '_'/,
    );
  });

  it("shows no control character of its pinned trust", () => {
    const checked = checkActivationResult(
      status({ pinned: { keys: ["fleet-1:\u001b]52;c;AAAA\u0007"], substituters: ["http://c"] } }),
    );
    expect(checked).toMatchObject({ pinned: { keys: ["fleet-1:\ufffd]52;c;AAAA\ufffd"] } });
  });
});
