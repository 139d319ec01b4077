// Every key the fleet file accepts survives fleetToJson: a fleet written back (by
// `fleet from-terraform`, by the lab) is the fleet that was read. A key added to FLEET_KEYS
// fails this test until the document below sets it, and then until fleetToJson writes it.
import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseFleetValue } from "./fleet-file.js";
import { fleetToJson } from "./fleet-json.js";
import { FLEET_KEYS } from "./fleet-keys.js";

const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
const AGE = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-db1";
const TOOL = "/nix/store/2aw0vxjiwkjkn7x4079qvh1jkl5pn05j-zstd-1.5.6";
const RAW_KEY = Buffer.from(
  String(generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }).x),
  "base64url",
);
const HOST_KEY = `ssh-ed25519 ${Buffer.concat([
  Buffer.from([0, 0, 0, 11]),
  Buffer.from("ssh-ed25519"),
  Buffer.from([0, 0, 0, 32]),
  RAW_KEY,
]).toString("base64")}`;

const HTTP_CHECK = { url: "http://{address}/health", expectStatus: 204, timeout: 7, retry: true };
const COMMAND_CHECK = { run: "systemctl is-active nginx", timeout: 9, retry: true };
const QUERY = {
  name: "errors",
  query: 'sum(rate(http_errors_total{instance="{address}"}[1m]))',
  max: 0.5,
  min: 0.01,
  baseline: { tolerance: 2 },
  reach: 60,
  failureLimit: 2,
  noData: "wait",
};
const OVERRIDE = {
  parallel: 2,
  canary: 1,
  confirmTimeout: 50,
  activationTimeout: 1200,
  keepGenerations: 4,
  reboot: "always",
  rebootTimeout: 1000,
  rebootRollback: false,
  requirePinned: true,
  deltas: false,
  health: { http: [HTTP_CHECK], commands: [COMMAND_CHECK] },
  bake: { seconds: 90, interval: 10 },
  analysis: [QUERY],
};

/** A fleet with every key of every object the fleet file has, none at its default. */
const EVERY_KEY = {
  cache: { url: "file:///srv/cache", publicKeys: [KEY], substituter: "https://cache.example.org" },
  releases: {
    channel: "production",
    publicKeys: [KEY],
    offlineTimeout: 7200,
    maxAge: 259200,
    signedReports: true,
  },
  ssh: {
    configFile: "/etc/fleet/ssh_config",
    knownHosts: "/etc/fleet/known_hosts",
    user: "deploy",
    sudo: true,
    maxConnections: 7,
  },
  ssm: { documentName: "fleet-activate", region: "eu-west-1", commandTimeout: 1200 },
  build: { host: "root@builder1", maxJobs: 4 },
  policy: {
    parallel: 5,
    maxFailures: 2,
    canary: 3,
    confirmTimeout: 45,
    activationTimeout: 900,
    keepGenerations: 5,
    reboot: "auto",
    rebootTimeout: 900,
    rebootRollback: false,
    requirePinned: true,
    deltas: false,
    health: { http: [HTTP_CHECK], commands: [COMMAND_CHECK] },
    pauseAfter: ["canary", 3],
    pauseTimeout: 600,
    onPauseTimeout: "resume",
    bake: { seconds: 60, interval: 5 },
    analysis: [QUERY],
  },
  policies: { "@web": OVERRIDE },
  hosts: {
    web1: {
      tags: ["web"],
      address: "10.0.0.2",
      sshHost: "lab-web1",
      sshUser: "admin",
      sudo: false,
      delivery: "ssh",
      system: ".#web",
    },
    i1: {
      delivery: "ssm",
      instanceId: "i-0123abcd",
      hostKey: HOST_KEY,
      address: "10.0.0.3",
      system: SYSTEM,
    },
    w: {
      delivery: "ssm",
      targets: [{ key: "tag:Role", values: ["web", "api"] }],
      address: "10.0.0.5",
      system: SYSTEM,
    },
  },
  secrets: {
    admins: [AGE],
    age: SYSTEM,
    entries: {
      db: {
        hosts: "@web",
        file: "secrets/database.age",
        owner: "postgres",
        group: "postgres",
        mode: "0440",
        path: "/run/keys/database",
      },
    },
  },
  deltas: { tool: TOOL },
  prometheus: { url: "http://127.0.0.1:9090", bearerTokenFile: "/etc/fleet/prom", timeout: 20 },
};

/** Where in EVERY_KEY each object of FLEET_KEYS is ($schema aside: it is not kept). */
const OBJECTS = {
  fleet: [EVERY_KEY],
  cache: [EVERY_KEY.cache],
  releases: [EVERY_KEY.releases],
  ssh: [EVERY_KEY.ssh],
  ssm: [EVERY_KEY.ssm],
  // builders and host are one or the other: builders in the second document.
  build: [EVERY_KEY.build, { builders: "@machines" }],
  policy: [EVERY_KEY.policy],
  policyOverride: [OVERRIDE],
  health: [EVERY_KEY.policy.health],
  bake: [EVERY_KEY.policy.bake],
  analysisQuery: [QUERY],
  baseline: [QUERY.baseline],
  prometheus: [EVERY_KEY.prometheus],
  httpCheck: [HTTP_CHECK],
  commandCheck: [COMMAND_CHECK],
  host: Object.values(EVERY_KEY.hosts),
  secrets: [EVERY_KEY.secrets],
  deltas: [EVERY_KEY.deltas],
  secret: [EVERY_KEY.secrets.entries.db],
  ssmTarget: EVERY_KEY.hosts.w.targets,
} satisfies Record<keyof typeof FLEET_KEYS, readonly object[]>;

describe("fleetToJson, every key", () => {
  it("the document sets every key of every object the fleet file accepts", () => {
    for (const [shape, objects] of Object.entries(OBJECTS)) {
      const keys = FLEET_KEYS[shape as keyof typeof FLEET_KEYS];
      const set = new Set(objects.flatMap((o) => Object.keys(o)));
      const missing = [...keys.required, ...keys.optional].filter(
        (k) => k !== "$schema" && !set.has(k),
      );
      expect({ shape, missing }).toEqual({ shape, missing: [] });
    }
  });

  it("writes each so that the fleet parses back to itself", () => {
    const withBuilders = { ...EVERY_KEY, build: { builders: "@machines", maxJobs: 2 } };
    for (const doc of [EVERY_KEY, withBuilders]) {
      const fleet = parseFleetValue(doc, "every-key.json");
      expect(parseFleetValue(fleetToJson(fleet), "written.json")).toStrictEqual(fleet);
    }
  });
});
