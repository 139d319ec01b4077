import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sshArgs } from "../delivery/ssh-transport.js";
import {
  type ForeignHost,
  Report,
  sshConfigBlock,
  sshOptionsAsConfig,
  unshadowHosts,
  withSshConfig,
} from "./foreign-fleet.js";
import { type SshAlias, sshAliasOf } from "./ssh-alias.js";
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
      refused: [],
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
      refused: [],
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
      refused: [],
    });
  });
});

/** An empty ssh_config, the one the converted fleet includes (so the machine's own is not read). */
const EMPTY_SSH_CONFIG = join(mkdtempSync(join(tmpdir(), "nixship-ssh-empty-")), "config");
writeFileSync(EMPTY_SSH_CONFIG, "", { mode: 0o600 });

const NO_ALIASES = { aliases: new Map(), report: new Report() };

/** What `ssh -G` (OpenSSH's own parser) makes of `host` under the ssh_config `text`. */
function sshResolves(text: string, host: string): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), "nixship-ssh-config-"));
  try {
    writeFileSync(join(dir, "config"), text);
    const out = execFileSync("ssh", ["-G", "-F", join(dir, "config"), host], { encoding: "utf8" });
    return Object.fromEntries(
      out.split("\n").flatMap((l) => {
        const at = l.indexOf(" ");
        return at > 0 ? [[l.slice(0, at), l.slice(at + 1)]] : [];
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("lines ssh would refuse (it refuses the whole file, every host's, for one)", () => {
  it("quotes a path with a space, and leaves a port that is not one, a double quote and -o Host/Match/Include", () => {
    const got = sshOptionsAsConfig([
      "-i",
      "/home/me/my key",
      "-p",
      "notaport",
      "-p70000",
      "-o",
      "Host evil",
      "-oMatch all",
      "-o",
      "Include /etc/other",
      "-J",
      'a"b',
      "-p",
      "2222",
    ]);
    expect(got).toEqual({
      lines: ['IdentityFile "/home/me/my key"', "Port 2222"],
      unknown: [],
      overridden: [],
      refused: [
        '-p "notaport": not a port from 1 to 65535',
        '-p "70000": not a port from 1 to 65535',
        '-o "Host evil": ssh takes no Host, Match or Include (nor a keyword that is not a word) on its command line, and in the host\'s block one would start a block of its own or read another file',
        '-o "Match all": ssh takes no Host, Match or Include (nor a keyword that is not a word) on its command line, and in the host\'s block one would start a block of its own or read another file',
        '-o "Include /etc/other": ssh takes no Host, Match or Include (nor a keyword that is not a word) on its command line, and in the host\'s block one would start a block of its own or read another file',
        '-J "a\\"b": empty, or with a double quote no ssh_config line can carry',
      ],
    });
    // OpenSSH reads the block as meant, and another host's too.
    const { sshConfig } = withSshConfig(
      {},
      [sshConfigBlock("web1", "10.0.0.1", got.lines)],
      EMPTY_SSH_CONFIG,
      NO_ALIASES,
    );
    expect(sshResolves(sshConfig as string, "web1")).toMatchObject({
      hostname: "10.0.0.1",
      port: "2222",
      identityfile: "/home/me/my key",
    });
    expect(sshResolves(sshConfig as string, "db1")).toMatchObject({ hostname: "db1", port: "22" });
  });
});

describe("unshadowHosts", () => {
  it("gives a host whose address is another host's block name a block of its own: ssh reaches its address", () => {
    const host = (name: string, fields: Record<string, string>) =>
      ({ name, fields, system: {}, policy: {} }) as unknown as ForeignHost;
    // web1 on a port of its own; web1-new reached at the name "web1" (an alias, a short name).
    const hosts = [
      host("web1", { address: "10.0.0.9" }),
      host("web1-new", { address: "web1" }),
      host("db1", { address: "10.0.0.3" }),
    ];
    (hosts[0]?.fields as Record<string, string>).sshHost = "web1";
    const blocks = [sshConfigBlock("web1", "10.0.0.9", ["Port 2200"])];
    const report = new Report();
    unshadowHosts(hosts, blocks, report);
    expect(hosts.map((h) => h.fields.sshHost)).toEqual(["web1", "web1-new", undefined]);
    expect(report.entries()).toEqual([
      {
        option: "address",
        outcome: "mapped",
        text: "web1 is another host's name in nixship-ssh_config: given a block of its own (Host web1-new, HostName web1), so that ssh reaches web1 and not that host",
        nodes: ["web1-new"],
      },
    ]);
    const { sshConfig } = withSshConfig({}, blocks, EMPTY_SSH_CONFIG, NO_ALIASES);
    expect(sshResolves(sshConfig as string, "web1-new")).toMatchObject({
      hostname: "web1",
      port: "22",
    });
    expect(sshResolves(sshConfig as string, "web1")).toMatchObject({
      hostname: "10.0.0.9",
      port: "2200",
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
      refused: [],
      user: "admin",
    });
    expect(sshOptionsAsConfig(["-o", "User=ops", "-ladmin"])).toEqual({
      lines: [],
      unknown: [],
      overridden: [],
      refused: [],
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

describe("an address the user's ssh_config aliases", () => {
  it("keeps the alias's HostName, Port, ProxyJump and IdentityFile in the node's block, after its own", () => {
    const dir = mkdtempSync(join(tmpdir(), "nixship-ssh-alias-"));
    try {
      // The ssh_config colmena was given (SSH_CONFIG_FILE): web1-alias is a machine behind a
      // bastion, on a port of its own.
      const user = join(dir, "user_config");
      writeFileSync(
        user,
        'Host web1-alias\n  HostName 192.0.2.7\n  Port 2201\n  ProxyJump bastion.example\n  IdentityFile "/k/alias key"\n',
      );
      const g = (config: string) =>
        execFileSync("ssh", ["-G", "-F", config, "web1-alias"], { encoding: "utf8" });
      const alias = sshAliasOf("web1-alias", g(user), g("/dev/null"));
      expect(alias).toEqual({
        hostname: "192.0.2.7",
        lines: ["Port 2201", "ProxyJump bastion.example", 'IdentityFile "/k/alias key"'],
      });
      // An address no Host of the config names has no alias.
      const other = (config: string) =>
        execFileSync("ssh", ["-G", "-F", config, "db1"], { encoding: "utf8" });
      expect(sshAliasOf("db1", other(user), other("/dev/null"))).toBeUndefined();
      // Node web1 at targetHost web1-alias, with an identity of its own (-i /k/deploy).
      const block = sshConfigBlock("web1", "web1-alias", ["IdentityFile /k/deploy"]);
      const without = withSshConfig({}, [block], user, NO_ALIASES);
      // Without it, ssh would reach the name web1-alias on port 22: the alias never matches.
      expect(sshResolves(without.sshConfig as string, "web1")).toMatchObject({
        hostname: "web1-alias",
        port: "22",
      });
      expect(without.blockAddresses).toEqual(["web1-alias"]);
      const report = new Report();
      const aliased = withSshConfig({}, [block], user, {
        aliases: new Map([["web1-alias", alias as SshAlias]]),
        report,
      });
      writeFileSync(join(dir, "written"), aliased.sshConfig as string);
      const lines = execFileSync("ssh", ["-G", "-F", join(dir, "written"), "web1"], {
        encoding: "utf8",
      }).split("\n");
      expect(lines).toEqual(
        expect.arrayContaining(["hostname 192.0.2.7", "port 2201", "proxyjump bastion.example"]),
      );
      // The node's own identity first, as its command line came before the config.
      expect(lines.filter((l) => l.startsWith("identityfile "))).toEqual([
        "identityfile /k/deploy",
        "identityfile /k/alias key",
      ]);
      expect(report.entries()).toEqual([
        {
          option: "ssh_config",
          outcome: "carried",
          text: "web1-alias is a Host of the ssh_config the old tool read: its settings go into the host's block of nixship-ssh_config (HostName 192.0.2.7, Port 2201, ProxyJump bastion.example, IdentityFile \"/k/alias key\"), which ssh finds by the host's name",
          nodes: ["web1"],
        },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
