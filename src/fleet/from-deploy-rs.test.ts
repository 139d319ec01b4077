import { describe, expect, it } from "vitest";
import { parseFleetValue } from "./fleet-file.js";
import { conversionJson, conversionNix, type ReportEntry } from "./foreign-fleet.js";
import {
  convertDeployRs,
  DEPLOY_RS_OPTIONS,
  type DeployRsDeploy,
  type DeployRsEval,
  type DeployRsLook,
  type DeployRsNode,
  deployRsReadError,
  GENERIC_SETTINGS,
  type GenericSettings,
  readDeployRsNodes,
} from "./from-deploy-rs.js";

const SETTINGS = {
  cacheUrl: "file:///var/cache/fleet",
  publicKey: "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=",
};

/** A node with a system profile that activates the configuration of `matches`. */
const node = (
  hostname: string | null,
  set: Partial<DeployRsNode> = {},
  system: GenericSettings = { user: "root" },
  matches: string[] = [],
): DeployRsNode => ({
  hostname,
  generic: {},
  profilesOrder: null,
  profiles: { system: { generic: system, profilePath: null, hasPath: true, matches } },
  ...set,
});

const deploy = (
  nodes: Record<string, DeployRsNode>,
  generic: GenericSettings = {},
): DeployRsDeploy => ({
  generic,
  nodes,
});

const ROOT = { localUser: "root" };
const fate = (entries: readonly ReportEntry[], option: string) =>
  entries.filter((e) => e.option === option).map((e) => [e.outcome, e.nodes]);

describe("convertDeployRs", () => {
  it("makes each node a host running the configuration its system profile activates", () => {
    const c = convertDeployRs(
      deploy({
        "some-random-system": node("some-random-system", {}, { user: "root" }, [
          "some-random-system",
        ]),
        other: node("10.0.0.2", {}, { user: "root" }, []),
      }),
      "flake.nix",
      ROOT,
    );
    const fleet = conversionJson(c, SETTINGS);
    expect(fleet.hosts).toEqual({
      "some-random-system": {
        address: "some-random-system",
        system: ".#nixosConfigurations.some-random-system",
      },
      other: { address: "10.0.0.2", system: ".#deploy.nodes.other.profiles.system.path" },
    });
    expect(parseFleetValue(fleet, "f").hosts).toHaveLength(2);
    const nix = conversionNix(c, SETTINGS, []);
    expect(nix).toContain("{ self, ... }:");
    expect(nix).toContain("system = self.nixosConfigurations.some-random-system;");
    expect(nix).toContain("system = self.deploy.nodes.other.profiles.system.path;");
    expect(
      c.report.find((e) => e.option === "profiles.system.path" && e.nodes.includes("other"))?.text,
    ).toMatch(/the path itself/);
  });

  it("prefers the configuration named as the node when several match", () => {
    const c = convertDeployRs(deploy({ b: node("b", {}, {}, ["a", "b"]) }), "f", ROOT);
    expect(c.hosts[0]?.system.installable).toBe(".#nixosConfigurations.b");
  });

  it("lays the profile's settings over the node's over the deploy's", () => {
    const c = convertDeployRs(
      deploy(
        {
          a: node(
            "a",
            { generic: { confirmTimeout: 20, activationTimeout: 100 } },
            { confirmTimeout: 10 },
          ),
          b: node("b", { generic: { magicRollback: false, confirmTimeout: 20 } }),
        },
        { sshUser: "admin", activationTimeout: 600 },
      ),
      "f",
      ROOT,
    );
    expect(c.ssh).toEqual({ user: "admin" });
    expect(c.hosts.map((h) => [h.name, h.fields, h.policy])).toEqual([
      ["a", { address: "a", sudo: true }, { confirmTimeout: 10, activationTimeout: 100 }],
      // Without magicRollback deploy-rs never applied the deploy's activationTimeout.
      ["b", { address: "b", sudo: true }, { confirmTimeout: 0 }],
    ]);
    const fleet = parseFleetValue(conversionJson(c, SETTINGS), "f");
    expect(fleet.policies).toEqual([
      { selector: "a", override: { confirmTimeout: 10, activationTimeout: 100 } },
      { selector: "b", override: { confirmTimeout: 0 } },
    ]);
    expect(fate(c.report, "magicRollback")).toEqual([["mapped", ["b"]]]);
    expect(fate(c.report, "activationTimeout")).toEqual([
      ["carried", ["a"]],
      ["left", ["b"]],
    ]);
    expect(
      c.report.find((e) => e.option === "activationTimeout" && e.outcome === "left")?.text,
    ).toBe(
      "600: had no effect, as deploy-rs applies it only while magicRollback waits; nixship's default (600 s) applies",
    );
  });

  it("names an activationTimeout nixship cannot take where the flake sets it, unless magicRollback is off", () => {
    const refused =
      (nodes: Record<string, DeployRsNode>, generic: GenericSettings = {}) =>
      () =>
        convertDeployRs(deploy(nodes, generic), "/f/flake.nix", ROOT);
    expect(refused({ web: node("web", {}, { activationTimeout: 0 }) })).toThrow(
      "/f/flake.nix: deploy.nodes.web.profiles.system.activationTimeout: 0 seconds: nixship gives an activation 1 to 86400 seconds (policies.NAME.activationTimeout)",
    );
    expect(refused({ web: node("web", { generic: { activationTimeout: 0 } }) })).toThrow(
      "/f/flake.nix: deploy.nodes.web.activationTimeout: 0 seconds",
    );
    expect(refused({ web: node("web") }, { activationTimeout: 100_000 })).toThrow(
      "/f/flake.nix: deploy.activationTimeout: 100000 seconds",
    );
    // deploy-rs applied none: left behind, not refused.
    const c = convertDeployRs(
      deploy({ web: node("web") }, { magicRollback: false, activationTimeout: 0 }),
      "f",
      ROOT,
    );
    expect(c.hosts[0]?.policy).toEqual({ confirmTimeout: 0 });
    expect(fate(c.report, "activationTimeout")).toEqual([["left", ["web"]]]);
  });

  it("writes out the local user deploy-rs would have logged in as, per host when they differ", () => {
    const c = convertDeployRs(
      deploy({ a: node("a"), b: node("b", { generic: { sshUser: "root" } }) }),
      "f",
      { localUser: "alice" },
    );
    expect(c.hosts.map((h) => h.fields)).toEqual([
      { address: "a", sshUser: "alice", sudo: true },
      { address: "b" },
    ]);
  });

  it("names what it leaves behind, and says what ssh options are in ssh_config", () => {
    const c = convertDeployRs(
      deploy(
        {
          a: node("a", {
            profilesOrder: ["system", "hm"],
            profiles: {
              system: {
                generic: {},
                profilePath: "/nix/var/nix/profiles/other",
                hasPath: true,
                matches: [],
              },
              hm: { generic: { user: "alice" }, profilePath: null, hasPath: true, matches: [] },
            },
          }),
        },
        {
          sudo: "doas -u",
          interactiveSudo: true,
          sshOpts: ["-p", "2121", "-o", "StrictHostKeyChecking=no"],
          fastConnection: true,
          autoRollback: false,
          tempPath: "/home/x/.deploy-rs",
          remoteBuild: true,
        },
      ),
      "f",
      ROOT,
    );
    const outcomes = Object.fromEntries(c.report.map((e) => [e.option, e.outcome]));
    expect(outcomes).toMatchObject({
      sudo: "left",
      interactiveSudo: "left",
      fastConnection: "left",
      autoRollback: "left",
      tempPath: "left",
      remoteBuild: "left",
      profilePath: "left",
      profilesOrder: "left",
      "profiles.<other>": "left",
    });
    // StrictHostKeyChecking is nixship's own: named as left, the port mapped.
    expect(
      c.report.filter((e) => e.option === "sshOpts").map((e) => [e.outcome, e.text.split(":")[0]]),
    ).toEqual([
      ["mapped", expect.stringContaining("the same settings")],
      ["left", "StrictHostKeyChecking no"],
    ]);
    expect(c.report.find((e) => e.option === "sshOpts")?.text).toMatch(/: Port 2121$/);
    expect(c.ssh).toMatchObject({ configFile: "./nixship-ssh_config" });
    expect(c.sshConfig).toContain(
      "Host a\n  HostName a\n  Port 2121\n\nMatch all\n  Include ~/.ssh/config\n",
    );
  });

  it("refuses a node without a hostname or system profile, naming the attribute", () => {
    expect(() => convertDeployRs(deploy({ a: node(null) }), "/f/flake.nix", ROOT)).toThrow(
      "/f/flake.nix: deploy.nodes.a.hostname is not set: nixship cannot reach the node",
    );
    expect(() =>
      convertDeployRs(deploy({ a: node("a", { profiles: {} }) }), "/f/flake.nix", ROOT),
    ).toThrow("/f/flake.nix: deploy.nodes.a.profiles.system.path is not set");
    expect(() => convertDeployRs(deploy({}), "f", ROOT)).toThrow("f: deploy.nodes is empty");
  });

  it("names every node it refuses at once", () => {
    expect(() =>
      convertDeployRs(
        deploy({
          "web.example.com": node("web.example.com"),
          "db.example.com": node("db.example.com"),
          ok: node("ok", {}, { sshUser: "bad user" }),
        }),
        "/f/flake.nix",
        ROOT,
      ),
    ).toThrow(
      /^\/f\/flake\.nix: 3 problems keep nodes from being converted:\n {2}- deploy\.nodes\."web\.example\.com": a nixship host name .*\n {2}- deploy\.nodes\."db\.example\.com": a nixship host name .*\n {2}- deploy\.nodes\.ok\.sshUser: "bad user" is no user name$/,
    );
  });
});

describe("DEPLOY_RS_OPTIONS", () => {
  // Every option deploy-rs's README and interface.json list: the generic settings (deploy, node
  // or profile), a node's and a profile's own; each is carried over, mapped or left behind.
  const MANUAL = [
    "sshUser",
    "user",
    "sudo",
    "interactiveSudo",
    "sshOpts",
    "fastConnection",
    "autoRollback",
    "magicRollback",
    "confirmTimeout",
    "activationTimeout",
    "tempPath",
    "remoteBuild",
    "hostname",
    "profilesOrder",
    "profiles",
    "profiles.system.path",
    "profiles.<other>",
    "profilePath",
  ];

  it("says of every option of deploy-rs's manual what nixship makes of it", () => {
    expect(Object.keys(DEPLOY_RS_OPTIONS).sort()).toEqual([...MANUAL].sort());
    expect([...GENERIC_SETTINGS].every((s) => s in DEPLOY_RS_OPTIONS)).toBe(true);
    for (const [option, { outcome }] of Object.entries(DEPLOY_RS_OPTIONS)) {
      expect(["carried", "mapped", "left"], option).toContain(outcome);
    }
  });
});

describe("readDeployRsNodes", () => {
  const PROFILE = ["deploy", "nodes", "web", "profiles", "system", "path"];
  const failed = (path: (string | number)[], place = "/f/flake.nix:14:79") => ({
    kind: "failed" as const,
    path,
    place,
    text: "cannot add a string to an integer",
  });
  /** An evaluator answering each reading in turn, and the looks it was given. */
  const answers = (...results: DeployRsEval[]) => {
    const looks: DeployRsLook[] = [];
    const evaluate = async (look: DeployRsLook) => {
      looks.push(look);
      const r = results[looks.length - 1];
      if (r === undefined) throw new Error("read once too often");
      return r;
    };
    return { looks, evaluate };
  };

  it("leaves out a configuration no node activates that fails to evaluate, reads again, and says it", async () => {
    const { looks, evaluate } = answers(failed([...PROFILE, "nixosConfigurations", "scratch"]), {
      kind: "read",
      deploy: deploy({
        web: {
          ...node("web.example"),
          profiles: {
            system: {
              generic: {},
              profilePath: null,
              hasPath: true,
              matches: ["webserver"],
              failed: ["thrower"],
            },
          },
        },
      }),
    });
    const read = await readDeployRsNodes(evaluate);
    expect(looks).toEqual([
      { skip: [], eager: [] },
      { skip: ["scratch"], eager: [] },
    ]);
    if (read.kind !== "read") throw new Error("not read");
    expect(read.deploy.skipped).toEqual({
      scratch: "/f/flake.nix:14:79: cannot add a string to an integer",
    });
    const c = convertDeployRs(read.deploy, "/f/flake.nix", ROOT);
    expect(c.hosts[0]?.system.installable).toBe(".#nixosConfigurations.webserver");
    expect(c.report.filter((e) => e.option === "nixosConfigurations").map((e) => e.text)).toEqual([
      "scratch: it fails to evaluate (/f/flake.nix:14:79: cannot add a string to an integer), and no node's system profile activates it: no host runs it",
      "thrower: it fails to evaluate (it throws), and no node's system profile activates it: no host runs it",
    ]);
  });

  it("names the configuration a node's system profile activates, and the node, when that fails", async () => {
    // The profile fails; read again with every configuration first: one fails as it did.
    const { looks, evaluate } = answers(
      failed(PROFILE),
      failed([...PROFILE, "nixosConfigurations", "badpath"]),
      failed(PROFILE),
    );
    const read = await readDeployRsNodes(evaluate);
    expect(looks).toEqual([
      { skip: [], eager: [] },
      { skip: [], eager: ["web"] },
      { skip: ["badpath"], eager: ["web"] },
    ]);
    expect(read).toMatchObject({
      kind: "failed",
      broken: { node: "web", configuration: "badpath" },
    });
    if (read.kind !== "failed") throw new Error("read");
    const err = deployRsReadError(read, undefined);
    expect(err.message).toBe(
      "/f/flake.nix:14:79: nixosConfigurations.badpath, which deploy.nodes.web.profiles.system.path activates, fails to evaluate: cannot add a string to an integer",
    );
    expect(err.hint).toMatch(/fix nixosConfigurations\.badpath .*give node web a system profile/);
  });

  it("names the node's profile when no configuration fails as it does", async () => {
    const { evaluate } = answers(failed(PROFILE), failed(PROFILE));
    const read = await readDeployRsNodes(evaluate);
    if (read.kind !== "failed") throw new Error("read");
    expect(read.broken).toBeUndefined();
    expect(deployRsReadError(read, undefined).message).toBe(
      "/f/flake.nix:14:79: deploy.nodes.web.profiles.system.path: cannot add a string to an integer",
    );
  });
});

describe("a user in sshOpts", () => {
  it("is said to have had no effect: deploy-rs gives ssh USER@HOST first, and ssh keeps the first user", () => {
    const c = convertDeployRs(
      deploy(
        { web: node("web.example", { generic: { sshOpts: ["-l", "alice", "-p", "2222"] } }) },
        {
          sshUser: "admin",
        },
      ),
      "f",
      ROOT,
    );
    expect(c.ssh).toMatchObject({ user: "admin" });
    expect(c.report).toContainEqual({
      option: "sshOpts",
      outcome: "left",
      text: "the user alice: it had no effect, as deploy-rs gives ssh admin@web.example first (sshUser, else your own user) and ssh keeps the first user it is given: the host is reached as admin, as deploy-rs reached it",
      nodes: ["web"],
    });
    expect(c.report.map((e) => e.text).join("\n")).not.toContain("give it as sshUser");
    expect(c.sshConfig).toContain("Host web\n  HostName web.example\n  Port 2222\n");
  });
});

describe("magicRollback with a confirmTimeout of 0", () => {
  it("keeps the confirmation: nixship's default, said, as 0 in nixship would turn it off", () => {
    const c = convertDeployRs(
      deploy({
        on: node("on", {}, { magicRollback: true, confirmTimeout: 0 }),
        unset: node("unset", { generic: { confirmTimeout: 0 } }),
        off: node("off", {}, { magicRollback: false, confirmTimeout: 0 }),
      }),
      "f",
      ROOT,
    );
    expect(c.hosts.map((h) => [h.name, h.policy])).toEqual([
      ["on", {}],
      ["unset", {}],
      ["off", { confirmTimeout: 0 }],
    ]);
    expect(fate(c.report, "confirmTimeout")).toEqual([["mapped", ["on", "unset"]]]);
    expect(c.report.find((e) => e.option === "confirmTimeout")?.text).toBe(
      "0, with magicRollback on: deploy-rs waits no time for the deployer's confirmation, so it rolls the activation back; nixship's confirmTimeout 0 would turn the confirmation off, so nixship's default applies (30 s): the host still rolls back unless the deployer confirms",
    );
    expect(parseFleetValue(conversionJson(c, SETTINGS), "f").policies).toEqual([
      { selector: "off", override: { confirmTimeout: 0 } },
    ]);
  });
});
