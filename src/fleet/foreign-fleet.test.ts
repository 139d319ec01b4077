import { describe, expect, it } from "vitest";
import { Report, sshOptionsAsConfig } from "./foreign-fleet.js";

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
    });
  });
});

describe("a user among ssh's options", () => {
  it("is no ssh_config line (nixship's own -l would win over it): the first one is given back", () => {
    expect(sshOptionsAsConfig(["-l", "admin", "-p", "22"])).toEqual({
      lines: ["Port 22"],
      unknown: [],
      user: "admin",
    });
    expect(sshOptionsAsConfig(["-o", "User=ops", "-ladmin"])).toEqual({
      lines: [],
      unknown: [],
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
