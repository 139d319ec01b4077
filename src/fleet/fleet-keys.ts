// The keys each object of the fleet file accepts: the parser refuses any other, and the
// schema test checks that nixship.schema.json lists the same.
import type { KeyShape } from "./json-check.js";

/** Every key each object of the fleet file accepts. */
export const FLEET_KEYS = {
  fleet: {
    required: ["hosts"],
    optional: [
      "$schema",
      "cache",
      "releases",
      "ssh",
      "ssm",
      "build",
      "policy",
      "policies",
      "secrets",
      "deltas",
    ],
  },
  cache: { required: ["url", "publicKeys"], optional: ["substituter"] },
  releases: { required: ["channel", "publicKeys"], optional: ["offlineTimeout", "maxAge"] },
  ssh: { required: [], optional: ["configFile", "knownHosts", "user", "sudo", "maxConnections"] },
  ssm: { required: [], optional: ["documentName", "region", "commandTimeout"] },
  build: { required: [], optional: ["builders", "host", "maxJobs"] },
  policy: {
    required: [],
    optional: [
      "parallel",
      "maxFailures",
      "canary",
      "confirmTimeout",
      "activationTimeout",
      "keepGenerations",
      "reboot",
      "rebootTimeout",
      "rebootRollback",
      "requirePinned",
      "deltas",
      "health",
    ],
  },
  /** A `policies` entry: every policy key but maxFailures (the rollout's alone). */
  policyOverride: {
    required: [],
    optional: [
      "parallel",
      "canary",
      "confirmTimeout",
      "activationTimeout",
      "keepGenerations",
      "reboot",
      "rebootTimeout",
      "rebootRollback",
      "requirePinned",
      "deltas",
      "health",
    ],
  },
  health: { required: [], optional: ["http", "commands"] },
  httpCheck: { required: ["url"], optional: ["expectStatus", "timeout", "retry"] },
  commandCheck: { required: ["run"], optional: ["timeout", "retry"] },
  host: {
    required: ["system"],
    optional: [
      "tags",
      "address",
      "sshHost",
      "delivery",
      "instanceId",
      "targets",
      "hostKey",
      "sudo",
    ],
  },
  secrets: { required: ["admins", "entries"], optional: ["age"] },
  deltas: { required: [], optional: ["tool"] },
  secret: { required: ["hosts"], optional: ["file", "owner", "group", "mode", "path"] },
  ssmTarget: { required: ["key", "values"], optional: [] },
} as const satisfies Record<string, KeyShape>;
