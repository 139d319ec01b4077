import { describe, expect, it } from "vitest";
import { sshArgs } from "../delivery/ssh-transport.js";
import { Report, sshOptionsAsConfig } from "./foreign-fleet.js";
import { SSH_OPTIONS_SET_BY_NIXSHIP } from "./ssh-options.js";

describe("sshOptionsAsConfig", () => {
  it("says ssh's command-line options as ssh_config lines, and names the others", () => {
    expect(
      sshOptionsAsConfig([
        "-p",
        "2121",
        "-i/k/id",
        "-o",
        "ProxyCommand=a=b",
        "-J",
        "bastion",
        "-A",
      ]),
    ).toEqual({
      lines: ["Port 2121", "IdentityFile /k/id", "ProxyCommand a=b", "ProxyJump bastion"],
      unknown: ["-A"],
      overridden: [],
    });
  });

  it("reads `-o 'Key Value'` as ssh does, and names what nixship's own command line overrides", () => {
    expect(
      sshOptionsAsConfig([
        "-o",
        "User deploy",
        "-o",
        "Compression yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-oConnectTimeout 3",
        "-o",
        "controlpath=/tmp/x",
      ]),
    ).toEqual({
      lines: ["Compression yes"],
      unknown: [],
      overridden: ["StrictHostKeyChecking no", "ConnectTimeout 3", "ControlPath /tmp/x"],
      user: "deploy",
    });
  });

  it("maps no value holding a line break (it would be a line of its own in the block)", () => {
    expect(
      sshOptionsAsConfig([
        "-o",
        "Compression=yes\nHost *\n  ProxyCommand sh -c x",
        "-J\tbastion\nProxyCommand y",
        "-p",
        "22\r",
        "-i",
        "/k/id",
      ]),
    ).toEqual({
      lines: ["IdentityFile /k/id"],
      unknown: [
        '-o "Compression=yes\\nHost *\\n  ProxyCommand sh -c x"',
        '"-J\\tbastion\\nProxyCommand y"',
        '-p "22\\r"',
      ],
      overridden: [],
    });
  });
});

describe("SSH_OPTIONS_SET_BY_NIXSHIP", () => {
  it("names every keyword nixship gives ssh with -o", () => {
    const target = {
      name: "web1",
      destination: "web1",
      configFile: "/c",
      knownHosts: "/k",
      user: "u",
    };
    for (const fresh of [false, true]) {
      const args = sshArgs({ ...target, settlingKex: "curve25519-sha256" }, { fresh });
      const given = args.flatMap((a, i) => (args[i - 1] === "-o" ? [a.split("=")[0]] : []));
      expect(given.length).toBeGreaterThan(5);
      for (const keyword of given) expect(SSH_OPTIONS_SET_BY_NIXSHIP).toContain(keyword);
    }
  });
});

describe("a user among ssh's options", () => {
  it("is no ssh_config line (nixship's own -l would win over it): the first one is given back", () => {
    expect(sshOptionsAsConfig(["-l", "admin", "-p", "22"])).toEqual({
      lines: ["Port 22"],
      unknown: [],
      overridden: [],
      user: "admin",
    });
    expect(sshOptionsAsConfig(["-o", "User=ops", "-ladmin"])).toEqual({
      lines: [],
      unknown: [],
      overridden: [],
      user: "ops",
    });
  });
});

describe("Report", () => {
  it("says each option and fate once, with every node it applies to", () => {
    const report = new Report();
    const fates = { tags: { outcome: "carried", text: "hosts.NAME.tags" } } as const;
    report.add(fates, "tags", "a");
    report.add(fates, "tags", "b");
    report.note("tags", { outcome: "left", text: "bad tag" }, "a");
    expect(report.entries()).toEqual([
      { option: "tags", outcome: "carried", text: "hosts.NAME.tags", nodes: ["a", "b"] },
      { option: "tags", outcome: "left", text: "bad tag", nodes: ["a"] },
    ]);
  });
});
