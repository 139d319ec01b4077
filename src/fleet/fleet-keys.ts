// The keys each object of the fleet file accepts: the parser refuses any other, and the
// schema test checks that nixship.schema.json lists the same.
import type { KeyShape } from "./json-check.js";

/** Every key of `policy`. */
const POLICY_KEYS = [
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
  "pauseAfter",
  "pauseTimeout",
  "onPauseTimeout",
  "bake",
  "analysis",
];
/** Policy keys of the whole rollout, which a `policies` entry (a role's) cannot set. */
const ROLLOUT_ONLY_POLICY_KEYS = ["maxFailures", "pauseAfter", "pauseTimeout", "onPauseTimeout"];

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
      "prometheus",
    ],
  },
  cache: { required: ["url", "publicKeys"], optional: ["substituter"] },
  releases: {
    required: ["channel", "publicKeys"],
    optional: ["offlineTimeout", "maxAge", "signedReports"],
  },
  ssh: { required: [], optional: ["configFile", "knownHosts", "user", "sudo", "maxConnections"] },
  ssm: { required: [], optional: ["documentName", "region", "commandTimeout"] },
  build: { required: [], optional: ["builders", "host", "maxJobs"] },
  policy: { required: [], optional: POLICY_KEYS },
  /** A `policies` entry: every policy key but maxFailures and the pauses (the rollout's alone). */
  policyOverride: {
    required: [],
    optional: POLICY_KEYS.filter((k) => !ROLLOUT_ONLY_POLICY_KEYS.includes(k)),
  },
  health: { required: [], optional: ["http", "commands"] },
  bake: { required: ["seconds"], optional: ["interval"] },
  analysisQuery: {
    required: ["name", "query"],
    optional: ["max", "min", "baseline", "reach", "failureLimit", "noData"],
  },
  baseline: { required: ["tolerance"], optional: [] },
  prometheus: { required: ["url"], optional: ["bearerTokenFile", "timeout"] },
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
      "sshUser",
    ],
  },
  secrets: { required: ["admins", "entries"], optional: ["age"] },
  deltas: { required: [], optional: ["tool"] },
  secret: { required: ["hosts"], optional: ["file", "owner", "group", "mode", "path"] },
  ssmTarget: { required: ["key", "values"], optional: [] },
} as const satisfies Record<string, KeyShape>;
