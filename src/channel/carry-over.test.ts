// What a channel's next release starts from, on fixtures: entries kept, an entry that names a
// failed system replaced by the host's last confirmed system (or dropped), a note for each, and
// when a release already states a planned set of entries.
import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import type { ReleaseHost } from "../release/release.js";
import { carryOver, statesEntries } from "./carry-over.js";
import type { HostEvent } from "./host-history.js";

const sys = (c: string, host: string) =>
  `/nix/store/${c.repeat(32)}-nixos-system-${host}` as StorePath;

const event = (seq: number, path: StorePath, outcome: HostEvent["outcome"]): HostEvent => ({
  seq,
  kind: "deploy",
  path,
  outcome,
});

describe("carryOver", () => {
  it("keeps every entry that names no failed system, and has nothing to say", () => {
    const hosts = {
      web1: {
        path: sys("a", "web1"),
        policy: { health: { http: [], commands: [] }, confirmTimeout: 5 },
      },
      web2: { path: sys("a", "web2") },
    };
    const histories = new Map([["web1", [event(1, sys("a", "web1"), "success")]]]);
    expect(carryOver({ seq: 1, hosts }, histories)).toEqual({ entries: hosts, notes: [] });
  });

  it("replaces an entry naming a failed system by the last confirmed one, or drops it, with a note each", () => {
    const histories = new Map([
      ["web2", [event(1, sys("a", "web2"), "success"), event(2, sys("c", "web2"), "failed")]],
      ["web3", [event(2, sys("c", "web3"), "failed")]],
    ]);
    const { entries, notes } = carryOver(
      {
        seq: 2,
        hosts: {
          web1: { path: sys("a", "web1") },
          web2: { path: sys("c", "web2") },
          web3: { path: sys("c", "web3") },
        },
      },
      histories,
    );
    expect(entries).toEqual({ web1: { path: sys("a", "web1") }, web2: { path: sys("a", "web2") } });
    expect(notes).toEqual([
      `web2: release 2 named ${sys("c", "web2")}, which failed there: the new release names its last confirmed system ${sys("a", "web2")}`,
      `web3: release 2 named ${sys("c", "web3")}, which failed there, and no system was confirmed on web3 in the releases read: the new release names none for it (its agent leaves it on what it runs)`,
    ]);
  });

  it("starts from nothing when the channel has no release", () => {
    expect(carryOver(undefined, new Map())).toEqual({ entries: {}, notes: [] });
  });
});

describe("statesEntries", () => {
  const entries: Record<string, ReleaseHost> = {
    web1: { path: sys("a", "web1"), secrets: { bundle: "b1", manifest: "m1" } },
    web2: { path: sys("a", "web2") },
  };

  it("holds when the release names the same hosts, systems, secrets and checks", () => {
    // Secrets compare by bundle: the manifest follows from it.
    const named = {
      ...entries,
      web1: { path: sys("a", "web1"), secrets: { bundle: "b1", manifest: "m2" } },
    };
    expect(statesEntries(named, entries)).toBe(true);
  });

  it("fails on another system, other secrets, other checks, another reboot or delta tool, or another set of hosts", () => {
    const web1 = entries.web1 as ReleaseHost;
    expect(statesEntries({ ...entries, web2: { path: sys("b", "web2") } }, entries)).toBe(false);
    expect(
      statesEntries(
        { ...entries, web1: { ...web1, secrets: { bundle: "b2", manifest: "m1" } } },
        entries,
      ),
    ).toBe(false);
    expect(
      statesEntries(
        {
          ...entries,
          web2: {
            path: sys("a", "web2"),
            policy: { health: { http: [], commands: [] }, confirmTimeout: 9 },
          },
        },
        entries,
      ),
    ).toBe(false);
    const web2 = entries.web2 as ReleaseHost;
    const rebooting = { ...web2, reboot: { timeout: 300, rollback: true } };
    expect(statesEntries({ ...entries, web2: rebooting }, entries)).toBe(false);
    expect(statesEntries(entries, { ...entries, web2: rebooting })).toBe(false);
    expect(
      statesEntries(
        { ...entries, web2: { ...rebooting, reboot: { timeout: 300, rollback: false } } },
        { ...entries, web2: rebooting },
      ),
    ).toBe(false);
    expect(
      statesEntries({ ...entries, web2: { ...web2, deltaTool: sys("z", "zstd") } }, entries),
    ).toBe(false);
    expect(statesEntries({ web1 }, entries)).toBe(false);
    expect(statesEntries({ ...entries, web3: { path: sys("a", "web3") } }, entries)).toBe(false);
  });
});
