// The fleet file (`nixship.json`): parse and validate it into a `Fleet`, filling in defaults.
// Every problem names its JSON path; all problems in a file are reported at once.
// `nixship.schema.json` describes the same shape for editors (a test keeps the two in step).
import { isAbsolute, resolve } from "node:path";
import { InputError } from "../errors.js";
import { parsePublicKey } from "../nix/keys.js";
import { isStorePath } from "../nix/store-path.js";
import { parseStoreUrl } from "../store/url.js";
import { credentialsIn, shownUrl } from "../util/url-credentials.js";
import {
  type CacheSettings,
  DEFAULT_SSH_USER,
  type DeltaSettings,
  type Fleet,
  type FleetHost,
  MAX_CONNECTIONS_LIMIT,
  MAX_RELEASE_AGE,
  NAME_MAX_LENGTH,
  NAME_PATTERN,
  RELEASE_DEFAULTS,
  type ReleaseSettings,
  type RolloutPolicy,
  requiresCache,
  SSH_USER_PATTERN,
  type SshSettings,
} from "./fleet.js";
import { mapFleetFiles } from "./fleet-files.js";
import { FLEET_KEYS } from "./fleet-keys.js";
import { usesPlaceholder } from "./health-url.js";
import { hostPolicy, type PolicyRule, rulesFor } from "./host-policy.js";
import {
  got,
  inputProblem,
  isJsonObject,
  type Problem,
  Problems,
  readArray,
  readInteger,
  readObject,
  readString,
} from "./json-check.js";
import { formatJsonPath, type JsonPath } from "./json-path.js";
import { parseJsonText } from "./json-text.js";
import { checkBakeAcrossFields, readPrometheus } from "./read-bake.js";
import { readBuild } from "./read-build.js";
import { readHosts } from "./read-hosts.js";
import { readPolicies, readPolicy } from "./read-policy.js";
import { readSecrets } from "./read-secrets.js";
import { readSsmSettings } from "./read-ssm.js";

export const MAX_REPORTED = 20;

/** How a problem is named: at its JSON path (a fleet file), or its flake attribute. */
export type ProblemFormat = (problem: Problem) => string;

const atJsonPath: ProblemFormat = (p) => `${formatJsonPath(p.path)}: ${p.message}`;

/** A fleet file with problems; `problems` holds them all, the message the first 20. */
export class FleetFileError extends InputError {
  readonly problems: readonly Problem[];

  constructor(source: string, problems: readonly Problem[], format: ProblemFormat = atJsonPath) {
    const lines = problems.slice(0, MAX_REPORTED).map((p) => `${source}: ${format(p)}`);
    if (problems.length > MAX_REPORTED) {
      lines.push(`${source}: … and ${problems.length - MAX_REPORTED} more problems`);
    }
    super("bad-fleet-file", lines.join("\n"));
    this.problems = problems;
  }
}

/** Parses the text of a fleet file; `source` names it in errors (e.g. `nixship.json`). */
export function parseFleet(text: string, source: string): Fleet {
  return parseFleetValue(parseJsonText(text, source), source);
}

/**
 * Validates an already-parsed fleet document: a fleet file's, or the value a flake's fleet
 * evaluates to (load-flake-fleet.ts), whose problems `format` names by attribute.
 */
export function parseFleetValue(value: unknown, source: string, format?: ProblemFormat): Fleet {
  const problems = new Problems();
  const fleet = readFleet(value, problems);
  if (problems.list.length > 0 || fleet === undefined) {
    throw new FleetFileError(source, problems.list, format);
  }
  return fleet;
}

/**
 * Resolves the relative file paths of a fleet (fleet-files.ts: ssh's files, secrets'
 * ciphertexts, a machines file, a bearer token file) against `baseDir` (the fleet file's
 * directory).
 */
export function resolveFleetPaths(fleet: Fleet, baseDir: string): Fleet {
  return mapFleetFiles(fleet, (file) => (isAbsolute(file) ? file : resolve(baseDir, file)));
}

function readFleet(value: unknown, problems: Problems): Fleet | undefined {
  const doc = readObject(value, [], problems, FLEET_KEYS.fleet);
  if (doc === undefined) return undefined;
  if (doc.$schema !== undefined) readString(doc.$schema, ["$schema"], problems);
  const cache = doc.cache === undefined ? undefined : readCache(doc.cache, problems);
  const releases = doc.releases === undefined ? undefined : readReleases(doc.releases, problems);
  const ssh = readSsh(doc.ssh === undefined ? {} : doc.ssh, problems);
  const ssm = readSsmSettings(doc.ssm === undefined ? {} : doc.ssm, problems);
  const build = readBuild(doc.build, problems);
  const policy = readPolicy(doc.policy === undefined ? {} : doc.policy, problems);
  const hosts = doc.hosts === undefined ? undefined : readHosts(doc.hosts, problems);
  const secrets = doc.secrets === undefined ? undefined : readSecrets(doc.secrets, hosts, problems);
  const policies = doc.policies === undefined ? [] : readPolicies(doc.policies, hosts, problems);
  const deltas = doc.deltas === undefined ? undefined : readDeltas(doc.deltas, problems);
  const prometheus =
    doc.prometheus === undefined ? undefined : readPrometheus(doc.prometheus, problems);
  if (
    ssh === undefined ||
    ssm === undefined ||
    build === undefined ||
    policy === undefined ||
    policies === undefined ||
    hosts === undefined
  ) {
    return undefined;
  }
  checkAcrossFields(
    {
      policy,
      policies,
      hosts,
      hasCache: doc.cache !== undefined,
      hasReleases: doc.releases !== undefined,
    },
    problems,
  );
  checkBakeAcrossFields(
    { policy, policies, hosts, hasPrometheus: doc.prometheus !== undefined },
    problems,
  );
  return {
    cache,
    releases,
    ssh,
    ssm,
    build,
    policy,
    policies,
    hosts,
    secrets,
    deltas,
    ...(prometheus === undefined ? {} : { prometheus }),
  };
}

/** `deltas`: false (off), true (on, agent hosts too), or an object naming the tool hosts use. */
function readDeltas(value: unknown, problems: Problems): DeltaSettings | undefined {
  if (typeof value === "boolean") return value ? { on: true, tool: undefined } : { on: false };
  if (!isJsonObject(value)) {
    problems.add(
      ["deltas"],
      `must be true, false or an object such as {"tool": "/nix/store/…-zstd-…"} (${got(value)})`,
    );
    return undefined;
  }
  const doc = readObject(value, ["deltas"], problems, FLEET_KEYS.deltas);
  if (doc === undefined) return undefined;
  if (doc.tool === undefined) return { on: true, tool: undefined };
  const tool = readString(doc.tool, ["deltas", "tool"], problems);
  if (tool === undefined) return undefined;
  if (!isStorePath(tool)) {
    problems.add(["deltas", "tool"], `must be a store path holding bin/zstd (${got(tool)})`);
    return undefined;
  }
  return { on: true, tool };
}

function checkAcrossFields(
  fleet: {
    policy: RolloutPolicy;
    policies: readonly PolicyRule[];
    hosts: readonly FleetHost[];
    hasCache: boolean;
    hasReleases: boolean;
  },
  problems: Problems,
): void {
  if (!fleet.hasCache) {
    for (const host of fleet.hosts.filter(requiresCache)) {
      problems.add(
        ["hosts", host.name, "delivery"],
        `"${host.delivery}" hosts substitute their system from the binary cache, but the fleet has no "cache"`,
      );
    }
  }
  if (!fleet.hasReleases) {
    for (const host of fleet.hosts.filter((h) => h.delivery === "agent")) {
      problems.add(
        ["hosts", host.name, "delivery"],
        '"agent" hosts follow signed releases, but the fleet has no "releases"',
      );
    }
  }
  // Each host's own checks: a role's {address} check needs an address on that role's hosts.
  for (const host of fleet.hosts.filter((h) => h.address === undefined)) {
    const where = addressCheckOf(fleet.policy, fleet.policies, host);
    if (where !== undefined)
      problems.add(["hosts", host.name], `has no "address", but ${where} uses {address}`);
  }
}

/**
 * Where the first HTTP check or analysis query the host runs that needs its {address} is
 * stated, if any (without one, a query would ask for its name's series instead: another's).
 */
function addressCheckOf(
  policy: RolloutPolicy,
  policies: readonly PolicyRule[],
  host: FleetHost,
): string | undefined {
  const { health, analysis = [] } = hostPolicy(policy, policies, host);
  const index = health.http.findIndex((c) => usesPlaceholder(c.url, "address"));
  if (index !== -1) {
    const from = rulesFor(policies, host).findLast((r) => r.override.health?.http !== undefined);
    return from === undefined
      ? `policy.health.http[${index}].url`
      : `policies["${from.selector}"].health.http[${index}].url`;
  }
  const query = analysis.findIndex((q) => usesPlaceholder(q.query, "address"));
  if (query === -1) return undefined;
  const from = rulesFor(policies, host).findLast((r) => r.override.analysis !== undefined);
  return from === undefined
    ? `policy.analysis[${query}].query`
    : `policies["${from.selector}"].analysis[${query}].query`;
}

/** The key prefix an s3:// URL names after its bucket ("fleet" of s3://b/fleet?region=r). */
function s3KeyPrefix(url: string): string | undefined {
  if (!url.startsWith("s3://")) return undefined;
  const path = url.slice("s3://".length).split("?")[0] ?? "";
  const prefix = path.slice(path.indexOf("/") + 1).replace(/\/+$/, "");
  return path.includes("/") && prefix !== "" ? prefix : undefined;
}

function readCache(value: unknown, problems: Problems): CacheSettings | undefined {
  const path = ["cache"];
  const cache = readObject(value, path, problems, FLEET_KEYS.cache);
  if (cache === undefined) return undefined;
  const url =
    cache.url === undefined ? undefined : readString(cache.url, [...path, "url"], problems);
  if (url !== undefined) {
    const problem = inputProblem(() => parseStoreUrl(url, {}));
    if (problem !== undefined) problems.add([...path, "url"], problem);
  }
  const publicKeys =
    cache.publicKeys === undefined
      ? undefined
      : readPublicKeys(cache.publicKeys, [...path, "publicKeys"], problems);
  let substituter: string | undefined;
  if (cache.substituter !== undefined) {
    substituter = readString(cache.substituter, [...path, "substituter"], problems);
    if (substituter !== undefined && !isSubstituterUrl(substituter)) {
      problems.add(
        [...path, "substituter"],
        `must be an http://, https://, s3:// or file:// URL (${got(shownUrl(substituter))})`,
      );
    } else if (substituter !== undefined && s3KeyPrefix(substituter) !== undefined) {
      problems.add(
        [...path, "substituter"],
        `names a key prefix (${s3KeyPrefix(substituter)}) in its bucket, which Nix's S3 store does not read (it reads a bucket whole): give the hosts a bucket of their own without a prefix, serve the cache to them (deploy --serve-cache), or make them agent hosts (their agent reads a prefix)`,
      );
    } else if (substituter !== undefined && credentialsIn(substituter) !== undefined) {
      // It travels in SSM's parameters and the hosts' command lines, and failures quote it.
      problems.add(
        [...path, "substituter"],
        `must hold no credentials (it has ${credentialsIn(substituter)}): give the hosts' Nix a netrc-file for an http(s) cache, or an instance role for S3`,
      );
    }
  }
  if (url === undefined || publicKeys === undefined) return undefined;
  return { url, publicKeys, substituter };
}

function readReleases(value: unknown, problems: Problems): ReleaseSettings | undefined {
  const path = ["releases"];
  const releases = readObject(value, path, problems, FLEET_KEYS.releases);
  if (releases === undefined) return undefined;
  const channel =
    releases.channel === undefined
      ? undefined
      : readString(releases.channel, [...path, "channel"], problems, {
          pattern: NAME_PATTERN,
          maxLength: NAME_MAX_LENGTH,
        });
  const publicKeys =
    releases.publicKeys === undefined
      ? undefined
      : readPublicKeys(releases.publicKeys, [...path, "publicKeys"], problems);
  const offlineTimeout =
    releases.offlineTimeout === undefined
      ? RELEASE_DEFAULTS.offlineTimeout
      : readInteger(releases.offlineTimeout, [...path, "offlineTimeout"], problems, { min: 1 });
  const maxAge =
    releases.maxAge === undefined
      ? RELEASE_DEFAULTS.maxAge
      : readInteger(releases.maxAge, [...path, "maxAge"], problems, {
          min: 60,
          max: MAX_RELEASE_AGE,
        });
  let signedReports: boolean = RELEASE_DEFAULTS.signedReports;
  if (releases.signedReports !== undefined) {
    if (typeof releases.signedReports === "boolean") signedReports = releases.signedReports;
    else {
      problems.add(
        [...path, "signedReports"],
        `must be true or false (${got(releases.signedReports)})`,
      );
    }
  }
  if (
    channel === undefined ||
    publicKeys === undefined ||
    offlineTimeout === undefined ||
    maxAge === undefined
  ) {
    return undefined;
  }
  return { channel, publicKeys, offlineTimeout, maxAge, signedReports };
}

/** At least one `name:base64` public key; undefined when the list is not an array. */
function readPublicKeys(value: unknown, path: JsonPath, problems: Problems): string[] | undefined {
  const keys = readArray(value, path, problems, 1);
  if (keys === undefined) return undefined;
  return keys.map((key, i) => {
    const keyPath = [...path, i];
    const text = readString(key, keyPath, problems);
    const problem = text === undefined ? undefined : inputProblem(() => parsePublicKey(text));
    if (problem !== undefined) problems.add(keyPath, problem);
    return text ?? "";
  });
}

function isSubstituterUrl(text: string): boolean {
  if (!URL.canParse(text)) return false;
  return ["http:", "https:", "s3:", "file:"].includes(new URL(text).protocol);
}

function readSsh(value: unknown, problems: Problems): SshSettings | undefined {
  const ssh = readObject(value, ["ssh"], problems, FLEET_KEYS.ssh);
  if (ssh === undefined) return undefined;
  const file = (key: "configFile" | "knownHosts") => {
    const text = ssh[key] === undefined ? undefined : readString(ssh[key], ["ssh", key], problems);
    if (text?.includes("\0")) problems.add(["ssh", key], "must not contain a NUL character");
    return text;
  };
  const user =
    ssh.user === undefined
      ? DEFAULT_SSH_USER
      : readString(ssh.user, ["ssh", "user"], problems, {
          pattern: SSH_USER_PATTERN,
          maxLength: 32,
        });
  let sudo = false;
  if (ssh.sudo !== undefined) {
    if (typeof ssh.sudo === "boolean") sudo = ssh.sudo;
    else problems.add(["ssh", "sudo"], `must be true or false (${got(ssh.sudo)})`);
  }
  const maxConnections =
    ssh.maxConnections === undefined
      ? undefined
      : readInteger(ssh.maxConnections, ["ssh", "maxConnections"], problems, {
          min: 1,
          max: MAX_CONNECTIONS_LIMIT,
        });
  return {
    user: user ?? DEFAULT_SSH_USER,
    sudo,
    configFile: file("configFile"),
    knownHosts: file("knownHosts"),
    ...(maxConnections === undefined ? {} : { maxConnections }),
  };
}
