import { describe, expect, it } from "vitest";
import { NAME_MAX_LENGTH, NAME_PATTERN } from "./fleet.js";
import { parseFleetValue } from "./fleet-file.js";
import { conversionJson, conversionNix, type ReportEntry } from "./foreign-fleet.js";
import {
  COLMENA_OPTIONS,
  type ColmenaHive,
  type ColmenaNode,
  convertColmena,
} from "./from-colmena.js";

const SETTINGS = {
  cacheUrl: "file:///var/cache/fleet",
  publicKey: "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=",
};

/** A node as colmena's defaults leave it. */
const node = (name: string, set: Partial<ColmenaNode> = {}): ColmenaNode => ({
  targetHost: name,
  targetPort: null,
  targetUser: "root",
  allowLocalDeployment: false,
  buildOnTarget: false,
  tags: [],
  keys: {},
  replaceUnknownProfiles: true,
  privilegeEscalationCommand: ["sudo", "-H", "--"],
  sshOptions: [],
  ...set,
});

const hive = (nodes: Record<string, ColmenaNode>, set: Partial<ColmenaHive> = {}): ColmenaHive => ({
  kind: "hive.nix",
  nodes,
  meta: {
    nixpkgs: true,
    nodeNixpkgs: [],
    specialArgs: [],
    nodeSpecialArgs: [],
    machinesFile: null,
    machinesFileInFlake: null,
    name: null,
    description: null,
    allowApplyAll: null,
  },
  defaults: false,
  network: false,
  ...set,
});

const KEY = {
  name: "db.key",
  hasText: false,
  keyFile: null,
  keyFileInFlake: null,
  keyFileCopied: false,
  hasCommand: false,
  destDir: "/run/keys",
  path: "/run/keys/db.key",
  user: "root",
  group: "root",
  permissions: "0600",
  uploadAt: "pre-activation",
};

const fate = (entries: readonly ReportEntry[], option: string) =>
  entries.filter((e) => e.option === option).map((e) => [e.outcome, e.nodes]);

describe("convertColmena", () => {
  it("makes each node a host: targetHost its address, its tags, its system the hive's", () => {
    const c = convertColmena(
      hive({
        "host-a": node("host-a"),
        "host-b": node("host-b", { targetHost: "host-b.mydomain.tld", tags: ["web", "infra-lax"] }),
      }),
      "hive.nix",
      {},
    );
    const fleet = conversionJson(c, SETTINGS);
    expect(fleet.hosts).toEqual({
      "host-a": { address: "host-a", system: ".#nixshipHive.nodes.host-a" },
      "host-b": {
        address: "host-b.mydomain.tld",
        tags: ["web", "infra-lax"],
        system: ".#nixshipHive.nodes.host-b",
      },
    });
    // The fleet file's own rules take it.
    expect(parseFleetValue(fleet, "f").hosts.map((h) => h.name)).toEqual(["host-a", "host-b"]);
    expect(c.jsonOutputLine).toBe("nixshipHive = nixship.lib.readColmenaHive (import ./hive.nix);");
    const nix = conversionNix(c, SETTINGS, ["header"]);
    expect(nix).toContain("hive = nixshipLib.readColmenaHive (import ./hive.nix);");
    expect(nix).toContain('host-a = { system = hive.nodes.host-a; address = "host-a"; };');
    expect(fate(c.report, "deployment.targetHost")).toEqual([["carried", ["host-a", "host-b"]]]);
    expect(fate(c.report, "meta.nixpkgs")).toEqual([["carried", []]]);
  });

  it("takes colmenaHive's systems when the flake has one, and its colmena output's otherwise", () => {
    const evaluated = convertColmena(hive({ web: node("web") }, { kind: "colmenaHive" }), "f", {});
    expect(evaluated.hosts[0]?.system).toEqual({
      nix: "self.colmenaHive.nodes.web",
      installable: ".#colmenaHive.toplevel.web",
    });
    expect(evaluated.needsLib).toBe(false);
    expect(evaluated.jsonOutputLine).toBeNull();
    const raw = convertColmena(hive({ web: node("web") }, { kind: "colmena" }), "f", {});
    expect(raw.nixLet).toEqual(["hive = nixshipLib.readColmenaHive self.colmena;"]);
  });

  it("makes one targetUser the fleet's ssh user, several each host's, and a non-root one reach by sudo", () => {
    const one = convertColmena(
      hive({ a: node("a", { targetUser: "ops" }), b: node("b", { targetUser: "ops" }) }),
      "f",
      {},
    );
    expect(one.ssh).toEqual({ user: "ops" });
    expect(one.hosts.map((h) => h.fields)).toEqual([
      { address: "a", sudo: true },
      { address: "b", sudo: true },
    ]);
    const several = convertColmena(
      hive({
        a: node("a", { targetUser: "ops", privilegeEscalationCommand: ["doas", "--"] }),
        b: node("b"),
      }),
      "f",
      {},
    );
    expect(several.ssh).toEqual({});
    expect(several.hosts.map((h) => h.fields)).toEqual([
      { address: "a", sshUser: "ops", sudo: true },
      { address: "b" },
    ]);
    expect(fate(several.report, "deployment.privilegeEscalationCommand")).toEqual([
      ["left", ["a"]],
    ]);
    expect(parseFleetValue(conversionJson(several, SETTINGS), "f").hosts).toHaveLength(2);
  });

  it("gives nodes behind one address on different ports each a block and an sshHost of its own", () => {
    const c = convertColmena(
      hive({
        "vm-a": node("vm-a", { targetHost: "203.0.113.10", targetPort: 2201 }),
        "vm-b": node("vm-b", { targetHost: "203.0.113.10", targetPort: 2202 }),
        plain: node("plain", { targetHost: "203.0.113.11" }),
      }),
      "f",
      {},
    );
    const hosts = parseFleetValue(conversionJson(c, SETTINGS), "f").hosts;
    expect(hosts.map((h) => [h.name, h.address, h.delivery === "ssh" ? h.sshHost : "-"])).toEqual([
      ["vm-a", "203.0.113.10", "vm-a"],
      ["vm-b", "203.0.113.10", "vm-b"],
      ["plain", "203.0.113.11", undefined],
    ]);
    expect(c.ssh).toEqual({ configFile: "./nixship-ssh_config" });
    expect(c.sshConfig).toContain(
      "Host vm-a\n  HostName 203.0.113.10\n  Port 2201\n\nHost vm-b\n  HostName 203.0.113.10\n  Port 2202\n\nMatch all\n",
    );
  });

  it("writes the blocks to the fleet's ssh.configFile, which then reads what ssh read before", () => {
    const c = convertColmena(hive({ b: node("b.example", { targetPort: 2222 }) }), "f", {});
    expect(c.ssh).toEqual({ configFile: "./nixship-ssh_config" });
    expect(c.sshConfig).toMatch(/^# The fleet's ssh.configFile, written by 'nixship init --from'/);
    // ssh keeps the first value it reads: the host's block comes before the files included,
    // which `Match all` keeps out of the last block.
    expect(
      c.sshConfig?.endsWith(
        "Host b\n  HostName b.example\n  Port 2222\n\nMatch all\n  Include ~/.ssh/config\n  Include /etc/ssh/ssh_config\n",
      ),
    ).toBe(true);
    expect(parseFleetValue(conversionJson(c, SETTINGS), "f").ssh.configFile).toBe(
      "./nixship-ssh_config",
    );
    // No block, no file: ssh reads its own files as before.
    const plain = convertColmena(hive({ a: node("a") }), "f", {});
    expect([plain.ssh, plain.sshConfig]).toEqual([{}, null]);
  });

  it("says what targetPort and sshOptions are in ssh_config, and carries SSH_CONFIG_FILE", () => {
    const c = convertColmena(
      hive({
        b: node("b", {
          targetHost: "b.example",
          targetPort: 1234,
          sshOptions: ["-o", "ForwardAgent=yes", "-v"],
        }),
      }),
      "f",
      { sshConfigFile: "/etc/colmena/ssh_config" },
    );
    // The file colmena was given is what ssh read: the fleet's file includes it.
    expect(c.ssh).toEqual({ configFile: "./nixship-ssh_config" });
    // One block for the node, its port and its options both.
    expect(
      c.sshConfig?.endsWith(
        'Host b\n  HostName b.example\n  Port 1234\n  ForwardAgent yes\n\nMatch all\n  Include "/etc/colmena/ssh_config"\n',
      ),
    ).toBe(true);
    expect(c.sshConfig?.match(/^Host /gm)).toHaveLength(1);
    const texts = c.report.map((e) => `${e.outcome} ${e.option}: ${e.text}`);
    expect(texts).toContainEqual(
      expect.stringMatching(/^mapped deployment.targetPort: .*nixship-ssh_config.*: Port 1234$/),
    );
    expect(texts).toContainEqual(
      expect.stringMatching(
        /^mapped deployment.sshOptions: .*nixship-ssh_config.*: ForwardAgent yes$/,
      ),
    );
    expect(texts).toContainEqual(
      expect.stringMatching(/^carried SSH_CONFIG_FILE: included by nixship-ssh_config/),
    );
    expect(texts).toContainEqual(
      "left deployment.sshOptions: -v: no ssh_config counterpart nixship knows",
    );
  });

  it("makes keys with a file, text or command secrets to set, and names a keyCommand and other places as left behind", () => {
    const c = convertColmena(
      hive({
        a: node("a", {
          keys: {
            "db.key": { ...KEY, keyFile: "/root/db.key" },
            "acme.secret": {
              ...KEY,
              name: "acme.secret",
              hasCommand: true,
              path: "/run/keys/acme.secret",
            },
            token: {
              ...KEY,
              name: "token",
              hasText: true,
              user: "acme",
              group: "nginx",
              permissions: "0640",
              path: "/run/keys/token",
            },
            disk: { ...KEY, name: "disk", keyFile: "/k", path: "/etc/disk.key" },
          },
        }),
      }),
      "f",
      {},
    );
    expect(c.secrets).toEqual({
      "a-db.key": { hosts: "a", mode: "0600", path: "/run/keys/db.key" },
      // A keyCommand's key keeps its entry, for its output to be set by hand.
      "a-acme.secret": { hosts: "a", mode: "0600", path: "/run/keys/acme.secret" },
      "a-token": {
        hosts: "a",
        owner: "acme",
        group: "nginx",
        mode: "0640",
        path: "/run/keys/token",
      },
    });
    expect(c.next).toEqual([
      "nixship secrets set a-db.key --from /root/db.key",
      "nixship secrets set a-acme.secret -",
      "nixship secrets set a-token -",
      "# the key disk of a (/etc/disk.key) is not carried over: nixship keeps secrets under /run only; give it a destDir under /run (such as /run/keys) and convert again",
    ]);
    expect(fate(c.report, "deployment.keys.<name>.keyCommand")).toEqual([
      ["left", ["a:acme.secret"]],
    ]);
    expect(fate(c.report, "deployment.keys.<name>.destDir")).toEqual([["left", ["a:disk"]]]);
    // The fleet says whose recipient is missing until it is filled in.
    const json = conversionJson(c, SETTINGS);
    expect(() => parseFleetValue(json, "f")).toThrow(/secrets\.admins\[0\]|secrets\.admins\.0/);
  });

  it("says a secret the flake holds, as a keyFile under its directory or as text, went into the store with it", () => {
    const c = convertColmena(
      hive({
        a: node("a", {
          keys: {
            inside: { ...KEY, name: "inside", keyFile: "/src/fleet/secrets/k" },
            outside: { ...KEY, name: "outside", keyFile: "/root/k" },
            text: { ...KEY, name: "text", hasText: true },
            // ./secrets/tracked and ./untracked in a git flake: the evaluation names both in
            // the flake's copy in the store, where only the tracked one is.
            tracked: {
              ...KEY,
              name: "tracked",
              keyFile: "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-source/secrets/tracked",
              keyFileInFlake: "secrets/tracked",
              keyFileCopied: true,
            },
            untracked: {
              ...KEY,
              name: "untracked",
              keyFile: "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-source/untracked",
              keyFileInFlake: "untracked",
            },
            built: {
              ...KEY,
              name: "built",
              keyFile: "/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-db-password",
            },
            // Kept elsewhere than /run, so left behind: its text is in the hive all the same.
            elsewhere: { ...KEY, name: "elsewhere", hasText: true, path: "/var/lib/app/pw" },
          },
        }),
      }),
      "f",
      { flakeDir: "/src/fleet" },
    );
    const left = (option: string) =>
      c.report.filter((e) => e.option === option && e.outcome === "left");
    expect(left("deployment.keys.<name>.keyFile")).toEqual([
      expect.objectContaining({
        nodes: ["a:inside"],
        text: expect.stringMatching(
          /^\/src\/fleet\/secrets\/k: the flake holds this secret, so Nix copies it into the store with the flake/,
        ),
      }),
      expect.objectContaining({
        nodes: ["a:tracked"],
        text: expect.stringMatching(
          /^\/src\/fleet\/secrets\/tracked: the flake holds this secret, and Nix copied it into the store/,
        ),
      }),
      expect.objectContaining({
        nodes: ["a:built"],
        text: expect.stringMatching(
          /^\/nix\/store\/1c6k\S+-db-password: this secret's file is in the Nix store/,
        ),
      }),
    ]);
    expect(left("deployment.keys.<name>.text")).toEqual([
      expect.objectContaining({
        nodes: ["a:text", "a:elsewhere"],
        text: expect.stringContaining("delete the text from the hive, and rotate it"),
      }),
    ]);
    // The files to read are the person's own, by their place in the flake.
    expect(c.next).toEqual(
      expect.arrayContaining([
        "nixship secrets set a-tracked --from /src/fleet/secrets/tracked",
        "nixship secrets set a-untracked --from /src/fleet/untracked",
      ]),
    );
    expect(c.next.join("\n")).not.toContain("-source/");
  });

  it("names what it leaves behind, node by node, and maps machinesFile to the builders", () => {
    const c = convertColmena(
      hive(
        {
          a: node("a", {
            allowLocalDeployment: true,
            buildOnTarget: true,
            replaceUnknownProfiles: false,
          }),
        },
        {
          meta: {
            nixpkgs: true,
            nodeNixpkgs: ["a"],
            specialArgs: ["inputs"],
            nodeSpecialArgs: [],
            machinesFile: "/etc/nix/machines",
            machinesFileInFlake: null,
            name: "prod",
            description: "the production hive",
            allowApplyAll: false,
          },
          defaults: true,
          network: true,
        },
      ),
      "f",
      { flakeDir: "/src/fleet" },
    );
    // Outside the flake: named as it is.
    expect(c.build).toEqual({ builders: "@/etc/nix/machines" });
    const outcomes = Object.fromEntries(c.report.map((e) => [e.option, e.outcome]));
    expect(outcomes).toMatchObject({
      "deployment.allowLocalDeployment": "left",
      "deployment.buildOnTarget": "left",
      "deployment.replaceUnknownProfiles": "left",
      "meta.machinesFile": "mapped",
      "meta.name": "left",
      "meta.description": "left",
      "meta.allowApplyAll": "left",
      "meta.nodeNixpkgs": "carried",
      "meta.specialArgs": "carried",
      defaults: "carried",
      network: "carried",
    });
  });

  it("names a machinesFile among the flake's files in the flake's directory, not its copy in the store", () => {
    const meta = {
      ...hive({}).meta,
      machinesFile: "/nix/store/6sanf3cimvq1fqd3ahr6hzqhp2xjz5v1-source/machines",
      machinesFileInFlake: "machines",
    };
    const c = convertColmena(hive({ a: node("a") }, { meta }), "f", { flakeDir: "/src/fleet" });
    expect(c.build).toEqual({ builders: "@/src/fleet/machines" });
  });

  it("refuses a node it cannot reach or name, naming the attribute", () => {
    expect(() =>
      convertColmena(hive({ laptop: node("laptop", { targetHost: null }) }), "/h/hive.nix", {}),
    ).toThrow(
      "/h/hive.nix: laptop.deployment.targetHost is null (apply-local only): nixship cannot reach any node of the hive",
    );
    expect(() =>
      convertColmena(
        hive({ a: node("a", { targetHost: "root@a" }) }, { kind: "colmenaHive" }),
        "/h/flake.nix",
        {},
      ),
    ).toThrow(
      '/h/flake.nix: colmenaHive.deploymentConfig.a.targetHost: "root@a" is no hostname or IP address',
    );
    expect(() => convertColmena(hive({ Web_1: node("Web_1") }), "f", {})).toThrow(
      /Web_1: a nixship host name/,
    );
    expect(() => convertColmena(hive({}), "f", {})).toThrow("f: the hive has no nodes");
  });

  it("names every node it refuses at once, with each fix", () => {
    let thrown: unknown;
    try {
      convertColmena(
        hive({
          Bad_Name: node("Bad_Name", { targetHost: "10.0.0.5" }),
          laptop: node("laptop", { targetHost: null }),
          web: node("web"),
          db: node("db", { targetUser: "bad user" }),
        }),
        "/h/hive.nix",
        {},
      );
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({
      code: "bad-node-name",
      message: [
        "/h/hive.nix: 2 problems keep nodes from being converted:",
        `  - Bad_Name: a nixship host name is lowercase letters, digits and '-' (${NAME_PATTERN.source}, at most ${NAME_MAX_LENGTH})`,
        '  - db.deployment.targetUser: "bad user" is no user name',
      ].join("\n"),
      hint: "rename the node in the hive, then convert it again",
    });
  });

  it("leaves out a node whose targetHost is null (apply-local only), as colmena apply does, and converts the rest", () => {
    const c = convertColmena(
      hive({
        web: node("10.0.0.1"),
        laptop: node("laptop", { targetHost: null, allowLocalDeployment: true, keys: { k: KEY } }),
      }),
      "/h/hive.nix",
      {},
    );
    expect(c.hosts.map((h) => h.name)).toEqual(["web"]);
    expect(c.secrets).toBeNull();
    expect(c.report).toContainEqual({
      option: "deployment.targetHost",
      outcome: "left",
      text: "null: apply-local only; colmena apply skips it too (nixship never deploys to the machine it runs on): the node is no host of the fleet, and 'colmena apply-local' or nixos-rebuild on it stays its way to switch",
      nodes: ["laptop"],
    });
    expect(parseFleetValue(conversionJson(c, SETTINGS), "f").hosts).toHaveLength(1);
    // None left: nothing to deploy, and said so, naming each.
    expect(() =>
      convertColmena(
        hive({ a: node("a", { targetHost: null }), b: node("b", { targetHost: null }) }),
        "/h/hive.nix",
        {},
      ),
    ).toThrow(
      "/h/hive.nix: a.deployment.targetHost, b.deployment.targetHost are null (apply-local only): nixship cannot reach any node of the hive",
    );
  });
});

describe("COLMENA_OPTIONS", () => {
  // Every option colmena's manual lists (its reference's deployment and meta options, a key's
  // options, and the hive's defaults and network): each is carried over, mapped or left behind.
  const MANUAL = [
    "deployment.targetHost",
    "deployment.targetPort",
    "deployment.targetUser",
    "deployment.allowLocalDeployment",
    "deployment.buildOnTarget",
    "deployment.tags",
    "deployment.keys",
    "deployment.replaceUnknownProfiles",
    "deployment.privilegeEscalationCommand",
    "deployment.sshOptions",
    "deployment.keys.<name>.name",
    "deployment.keys.<name>.text",
    "deployment.keys.<name>.keyFile",
    "deployment.keys.<name>.keyCommand",
    "deployment.keys.<name>.destDir",
    "deployment.keys.<name>.path",
    "deployment.keys.<name>.user",
    "deployment.keys.<name>.group",
    "deployment.keys.<name>.permissions",
    "deployment.keys.<name>.uploadAt",
    "meta.name",
    "meta.description",
    "meta.nixpkgs",
    "meta.nodeNixpkgs",
    "meta.nodeSpecialArgs",
    "meta.machinesFile",
    "meta.specialArgs",
    "meta.allowApplyAll",
    "defaults",
    "network",
  ];

  it("says of every option of colmena's manual what nixship makes of it", () => {
    expect(Object.keys(COLMENA_OPTIONS).sort()).toEqual([...MANUAL].sort());
    for (const [option, { outcome, text }] of Object.entries(COLMENA_OPTIONS)) {
      expect(["carried", "mapped", "left"], option).toContain(outcome);
      expect(text.length, option).toBeGreaterThan(10);
    }
  });
});

describe("a user in a node's sshOptions", () => {
  it("is the host's user when targetUser is null, as ssh took it from them; not an ssh_config line", () => {
    const c = convertColmena(
      hive({
        web: node("10.0.0.1", { targetUser: null, sshOptions: ["-o", "User=admin", "-p", "2222"] }),
      }),
      "hive.nix",
      {},
    );
    expect(c.ssh).toMatchObject({ user: "admin" });
    expect(c.hosts[0]?.fields).toMatchObject({ sudo: true });
    expect(c.report).toContainEqual({
      option: "deployment.sshOptions",
      outcome: "mapped",
      text: "the user admin: ssh.user (one user for every host) or hosts.NAME.sshUser, as deployment.targetUser is null and ssh took the user from these options",
      nodes: ["web"],
    });
    expect(c.report.map((e) => e.text).join("\n")).not.toContain("give it as");
    const mapped = c.report.find(
      (e) => e.option === "deployment.sshOptions" && e.text.startsWith("the same settings"),
    );
    expect(mapped?.text).toMatch(/: Port 2222$/);
    expect(c.sshConfig).toContain("Host web\n  HostName 10.0.0.1\n  Port 2222\n");
  });
});

describe("what init --from colmena does not carry over as it is", () => {
  it("says a key kept outside /run is not carried over, in the report and among the next steps", () => {
    const c = convertColmena(
      hive({
        web: node("web", {
          keys: {
            "db.key": { ...KEY, keyFile: "/root/db.key" },
            api: {
              ...KEY,
              name: "api",
              keyFile: "/root/api",
              destDir: "/var/keys",
              path: "/var/keys/api",
            },
          },
        }),
      }),
      "hive.nix",
      {},
    );
    expect(Object.keys(c.secrets ?? {})).toEqual(["web-db.key"]);
    expect(c.report).toContainEqual(
      expect.objectContaining({
        option: "deployment.keys.<name>.destDir",
        outcome: "left",
        nodes: ["web:api"],
        text: expect.stringMatching(
          /^\/var\/keys\/api: this key is not carried over \(the fleet has no secret for it\): nixship keeps secrets in files under \/run only.*give it a destDir under \/run/,
        ),
      }),
    );
    expect(c.next).toEqual([
      "nixship secrets set web-db.key --from /root/db.key",
      "# the key api of web (/var/keys/api) is not carried over: nixship keeps secrets under /run only; give it a destDir under /run (such as /run/keys) and convert again",
    ]);
  });

  it("makes a tag nixship cannot hold lowercase (any other character '-') when no other tag of the hive becomes it, and says so", () => {
    const c = convertColmena(
      hive({
        a: node("a", { tags: ["Web", "Infra_Lax", "web2"] }),
        b: node("b", { tags: ["Prod", "prod", "web2"] }),
      }),
      "hive.nix",
      {},
    );
    const fleet = conversionJson(c, SETTINGS);
    expect(fleet.hosts).toMatchObject({
      a: { tags: ["web", "infra-lax", "web2"] },
      // "Prod" would be "prod", another of the hive's tags: @prod would select both.
      b: { tags: ["prod", "web2"] },
    });
    expect(parseFleetValue(fleet, "f").hosts.map((h) => h.tags)).toEqual([
      ["web", "infra-lax", "web2"],
      ["prod", "web2"],
    ]);
    const said = c.report.filter((e) => e.option === "deployment.tags" && e.outcome !== "carried");
    expect(said.map((e) => [e.outcome, e.nodes, e.text.split(":")[0]])).toEqual([
      ["mapped", ["a"], 'the tag "Web"'],
      ["mapped", ["a"], 'the tag "Infra_Lax"'],
      ["left", ["b"], 'the tag "Prod"'],
    ]);
    expect(said[0]?.text).toBe(
      "the tag \"Web\": \"web\", as nixship's tags are lowercase letters, digits and '-' (at most 63): --on @web selects the hosts colmena's --on @Web did",
    );
    expect(said[2]?.text).toMatch(/it would be "prod", as "prod" is too, .*: left behind/);
  });

  it("with a targetUser, says a user in sshOptions had no effect (colmena gives ssh USER@HOST first)", () => {
    const c = convertColmena(
      hive({ web: node("10.0.0.1", { targetUser: "deploy", sshOptions: ["-l", "admin"] }) }),
      "hive.nix",
      {},
    );
    expect(c.ssh).toEqual({ user: "deploy" });
    expect(c.report).toContainEqual({
      option: "deployment.sshOptions",
      outcome: "left",
      text: "the user admin: it had no effect, as colmena gives ssh deploy@10.0.0.1 first (deployment.targetUser) and ssh keeps the first user it is given: the host is reached as deploy, as colmena reached it",
      nodes: ["web"],
    });
    // Nodes whose sshOptions name different users: each host's own.
    const two = convertColmena(
      hive({
        a: node("a", { targetUser: null, sshOptions: ["-lops"] }),
        b: node("b", { targetUser: null, sshOptions: ["-o", "User root"] }),
      }),
      "hive.nix",
      {},
    );
    expect(two.ssh).toEqual({});
    expect(two.hosts.map((h) => h.fields)).toEqual([
      { address: "a", sshUser: "ops", sudo: true },
      { address: "b" },
    ]);
    expect(() =>
      convertColmena(
        hive({ a: node("a", { targetUser: null, sshOptions: ["-l", "bad user"] }) }),
        "/h/hive.nix",
        {},
      ),
    ).toThrow('/h/hive.nix: a.deployment.sshOptions: the user "bad user" is no user name');
  });
});
