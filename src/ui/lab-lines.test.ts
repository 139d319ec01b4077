import { describe, expect, it } from "vitest";
import type { LabState } from "../lab/lab-state.js";
import { labLayout } from "../lab/layout.js";
import { formatLabEvent, formatLabHints, formatLabHosts } from "./lab-lines.js";

const layout = labLayout("/var/lib/nixship/labs", "nc", 3, 2);
const state: LabState = {
  version: 1,
  name: "nc",
  number: 3,
  createdAt: "2026-11-23T00:00:00.000Z",
  hosts: [
    { name: "nc1", address: "10.231.3.2", netns: "nixship-nc1", pid: 10 },
    { name: "nc2", address: "10.231.3.3", netns: "nixship-nc2", pid: 11 },
  ],
};

describe("lab up's lines", () => {
  it("a line per host up and per agent started, none for a host starting", () => {
    expect(formatLabEvent({ type: "host-up", host: "nc1", pid: 10 })).toBe("nc1 is up");
    expect(formatLabEvent({ type: "agent-up", host: "nc1", pid: 12 })).toBe(
      "nc1: its agent runs (pid 12)",
    );
    expect(formatLabEvent({ type: "host-starting", host: "nc1", address: "10.231.3.2" })).toBe(
      undefined,
    );
  });

  it("the hosts on stdout, and how to reach and deploy to them", () => {
    expect(formatLabHosts(state)).toBe("nc1\t10.231.3.2\nnc2\t10.231.3.3\n");
    const dir = "/var/lib/nixship/labs/nc";
    expect(formatLabHints(state, layout, true)).toBe(
      [
        "lab 'nc' is already up",
        `ssh: ssh -F ${dir}/ssh_config nc1`,
        `deploy: nixship deploy --fleet ${dir}/nixship.json --key ${dir}/cache.sec --serve-cache 10.231.3.1:0`,
        `the same fleet in Nix: ${dir}/fleet/flake.nix (--fleet path:${dir}/fleet#nixship)`,
        "",
      ].join("\n"),
    );
    expect(formatLabHints({ ...state, agents: true }, layout, false)).toContain(
      `--release-key ${dir}/release.sec\n`,
    );
  });

  it("names the user's fleet file the hosts were added to (lab up --fleet F)", () => {
    const dir = "/var/lib/nixship/labs/nc";
    const created = formatLabHints(state, layout, false, { file: "/w/f.json", created: true });
    expect(created).toContain(
      `deploy: nixship deploy --fleet /w/f.json --key ${dir}/cache.sec --serve-cache 10.231.3.1:0\n`,
    );
    // A file of the user's own keeps its cache: its key, not the lab's.
    const merged = formatLabHints(state, layout, false, { file: "/w/f.json", created: false });
    expect(merged).toContain(
      "deploy: nixship deploy --fleet /w/f.json --key SECRET_FILE --serve-cache 10.231.3.1:0\n  (SECRET_FILE: the secret key of /w/f.json's cache)\n",
    );
    expect(merged).not.toContain("nixship.json");
    expect(merged).not.toContain("flake.nix");
  });

  it("says which Nix the hosts run when it is not the machine's (lab up --nix)", () => {
    const hints = formatLabHints({ ...state, nix: "nix (Nix) 2.26.3" }, layout, false);
    expect(hints.split("\n")[0]).toBe("the hosts run nix (Nix) 2.26.3");
  });
});
