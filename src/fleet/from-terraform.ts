// `terraform output -json` of examples/aws to a fleet file. Terraform knows the hosts (instance
// IDs, addresses, tags), the cache URL and the SSM document; it does not know what each host
// should run, nor the keys and policy: those come from a base fleet or a system template.
// Pure: JSON value in, fleet document out, every problem named by its JSON path in the input.

import { isIP } from "node:net";
import { canonicalHostKey } from "../age/host-key.js";
import { InputError } from "../errors.js";
import { STORE_DIR, type StorePath } from "../nix/store-path.js";
import { parseStoreUrl } from "../store/url.js";
import {
  ADDRESS_PATTERN,
  DEFAULT_SSH_USER,
  type DeliveryMode,
  FLAKE_INSTALLABLE_PATTERN,
  type Fleet,
  type FleetHost,
  INSTANCE_ID_PATTERN,
  NAME_MAX_LENGTH,
  NAME_PATTERN,
  NO_BUILD_SETTINGS,
  POLICY_DEFAULTS,
  SSM_DEFAULTS,
  type SystemSpec,
} from "./fleet.js";
import { parseFleetValue } from "./fleet-file.js";
import { fleetToJson, type JsonObject } from "./fleet-json.js";
import {
  got,
  inputProblem,
  isJsonObject,
  type Problem,
  Problems,
  readString,
} from "./json-check.js";
import { formatJsonPath, type JsonPath } from "./json-path.js";
import { HostKeyChangedError, type HostKeyConflict, keyFingerprint } from "./known-hosts.js";
import { AWS_REGION_PATTERN, SSM_DOCUMENT_NAME_PATTERN } from "./read-ssm.js";

/** The outputs of examples/aws this reads; others are ignored. */
export const TERRAFORM_OUTPUTS = ["cache_url", "region", "ssm_document_name", "hosts"] as const;

/** The instance tag whose value always becomes a fleet tag. */
export const ROLE_TAG_KEY = "Role";

/** What a system template fills in with each host's name. */
export const SYSTEM_TEMPLATE_PLACEHOLDER = "{name}";

export interface FleetFromTerraformOptions {
  readonly via: DeliveryMode;
  /** More instance tag keys whose values become fleet tags, besides `Role`. */
  readonly tagKeys: readonly string[];
  /**
   * Each host's system by name, and the settings Terraform does not know: cache keys and
   * substituter, releases, ssh, policy, ssm.commandTimeout.
   */
  readonly base: Fleet | undefined;
  /** The system of hosts the base does not name; `{name}` becomes the host's name. */
  readonly systemTemplate: string | undefined;
  /** The public keys hosts trust for the cache; undefined: the base's. */
  readonly cacheKeys: readonly string[] | undefined;
  /** Undefined: the base's; else, for ssm hosts, the cache URL (an S3 store Nix reads). */
  readonly substituter: string | undefined;
  /**
   * Take a host key from Terraform that differs from the base fleet's `hostKey` for an ssm or
   * agent host (else that is a HostKeyChangedError).
   */
  readonly replaceHostKeys?: boolean;
  /** The fleet's ssh.knownHosts, as the fleet file names it; undefined: the base's. */
  readonly knownHosts?: string | undefined;
}

/** What Terraform says of a host's SSH host key, and the names ssh reaches it by. */
export interface TerraformHostKey {
  readonly host: string;
  /** public_ip, then private_ip: the names a known_hosts line gives it. */
  readonly names: readonly string[];
  /** `ssh-ed25519 BASE64` from the output ssh_host_public_key; undefined when it has none. */
  readonly key: string | undefined;
}

export interface FleetFromTerraform {
  /** The fleet file's content. */
  readonly doc: JsonObject;
  /** The same, as the fleet loader reads it. */
  readonly fleet: Fleet;
  /** Hosts of the base fleet that Terraform does not list (left out). */
  readonly notInTerraform: readonly string[];
  /** Each host's key and names, in the order of the hosts. */
  readonly hostKeys: readonly TerraformHostKey[];
}

/** The flag that lets a changed host key through. */
export const REPLACE_HOST_KEYS_FLAG = "--replace-host-keys";

/** Terraform's output has problems; `problems` holds them all, each at its JSON path. */
export class TerraformOutputError extends InputError {
  readonly problems: readonly Problem[];

  constructor(source: string, problems: readonly Problem[]) {
    super(
      "bad-terraform-output",
      problems.map((p) => `${source}: ${formatJsonPath(p.path)}: ${p.message}`).join("\n"),
      { hint: "give the output of 'terraform output -json' in the examples/aws root module" },
    );
    this.problems = problems;
  }
}

interface TerraformHost {
  readonly name: string;
  readonly instanceId: string | undefined;
  readonly address: string | undefined;
  /** public_ip, then private_ip, those it has. */
  readonly addresses: readonly string[];
  readonly hostKey: string | undefined;
  readonly tags: readonly string[];
  readonly system: SystemSpec;
}

/** Builds the fleet; `source` names the input in messages (a file name, or "stdin"). */
export function fleetFromTerraform(
  outputs: unknown,
  options: FleetFromTerraformOptions,
  source: string,
): FleetFromTerraform {
  const problems = new Problems();
  const read = readOutputs(outputs, options, problems);
  if (problems.list.length > 0 || read === undefined) {
    throw new TerraformOutputError(source, problems.list.map(unquotedIfSensitive(outputs)));
  }
  const { base } = options;
  const conflicts: HostKeyConflict[] = [];
  const publicKeys = options.cacheKeys ?? base?.cache?.publicKeys ?? [];
  const substituter =
    options.substituter ??
    base?.cache?.substituter ??
    (options.via === "ssm" && read.cacheUrl.startsWith("s3://") ? read.cacheUrl : undefined);
  // The base's settings, every one (a setting added to fleets is carried without a word
  // here), with what Terraform knows laid over them.
  const fleet: Fleet = {
    ...(base ?? {
      releases: undefined,
      policy: { ...POLICY_DEFAULTS, health: { http: [], commands: [] } },
      build: NO_BUILD_SETTINGS,
      policies: [],
      secrets: undefined,
      deltas: undefined,
    }),
    cache: { url: read.cacheUrl, publicKeys, substituter },
    ssh: {
      ...(base?.ssh ?? {
        user: DEFAULT_SSH_USER,
        sudo: false,
        configFile: undefined,
        knownHosts: undefined,
      }),
      ...(options.knownHosts === undefined ? {} : { knownHosts: options.knownHosts }),
    },
    ssm: {
      documentName: read.documentName,
      region: read.region,
      commandTimeout: base?.ssm.commandTimeout ?? SSM_DEFAULTS.commandTimeout,
    },
    hosts: read.hosts.map((h) =>
      toFleetHost(h, options.via, hostKeyOf(h, options, conflicts), baseHost(base, h.name)),
    ),
  };
  if (conflicts.length > 0) throw new HostKeyChangedError(conflicts, REPLACE_HOST_KEYS_FLAG);
  const doc = fleetToJson(fleet);
  const names = new Set(read.hosts.map((h) => h.name));
  return {
    doc,
    fleet: parseFleetValue(doc, "the fleet made from Terraform's outputs"),
    notInTerraform: (base?.hosts ?? []).map((h) => h.name).filter((n) => !names.has(n)),
    hostKeys: read.hosts.map((h) => ({ host: h.name, names: h.addresses, key: h.hostKey })),
  };
}

/**
 * An ssm or agent host's `hostKey` (what its secrets are encrypted to): Terraform's, else the
 * base fleet's. An ssh host has none: its key goes to known_hosts.
 */
function hostKeyOf(
  host: TerraformHost,
  options: FleetFromTerraformOptions,
  conflicts: HostKeyConflict[],
): string | undefined {
  if (options.via === "ssh") return undefined;
  const fromBase = baseHost(options.base, host.name)?.hostKey;
  if (host.hostKey === undefined) return fromBase;
  if (fromBase !== undefined && fromBase !== host.hostKey && options.replaceHostKeys !== true) {
    conflicts.push({
      host: host.name,
      where: "the base fleet's hostKey",
      oldFingerprint: keyFingerprint(fromBase),
      newFingerprint: keyFingerprint(host.hostKey),
      source: "Terraform's output ssh_host_public_key",
    });
  }
  return host.hostKey;
}

/** The base fleet's hosts by name, made once per base (a fleet of thousands is looked up often). */
const baseHostsByName = new WeakMap<Fleet, ReadonlyMap<string, FleetHost>>();

/** The base fleet's host of that name, if any. */
function baseHost(base: Fleet | undefined, name: string): FleetHost | undefined {
  if (base === undefined) return undefined;
  let byName = baseHostsByName.get(base);
  if (byName === undefined) {
    byName = new Map(base.hosts.map((h) => [h.name, h]));
    baseHostsByName.set(base, byName);
  }
  return byName.get(name);
}

/** A fleet file's system text as a spec; undefined when it is neither kind. */
export function systemSpec(text: string): SystemSpec | undefined {
  if (text.startsWith(`${STORE_DIR}/`)) return { kind: "store-path", path: text as StorePath };
  if (FLAKE_INSTALLABLE_PATTERN.test(text)) return { kind: "flake", installable: text };
  return undefined;
}

/**
 * The host as Terraform gives it, with what the base fleet says of it that Terraform does not
 * know: its tags beside Terraform's, and for an ssh host its ssh user and sudo. Not its
 * `sshHost`: the host is reached at Terraform's address, the one its known_hosts line names.
 */
function toFleetHost(
  host: TerraformHost,
  via: DeliveryMode,
  hostKey: string | undefined,
  fromBase: FleetHost | undefined,
): FleetHost {
  const { name, address, system } = host;
  const tags = [...new Set([...host.tags, ...(fromBase?.tags ?? [])])];
  const common = { name, tags, address, system, ...(hostKey === undefined ? {} : { hostKey }) };
  switch (via) {
    case "ssm":
      return { ...common, delivery: "ssm", instanceId: host.instanceId, targets: undefined };
    case "ssh": {
      const ssh = fromBase?.delivery === "ssh" ? fromBase : undefined;
      return {
        ...common,
        delivery: "ssh",
        sshHost: undefined,
        ...(ssh?.sudo === undefined ? {} : { sudo: ssh.sudo }),
        ...(ssh?.sshUser === undefined ? {} : { sshUser: ssh.sshUser }),
      };
    }
    case "agent":
      return { ...common, delivery: "agent" };
  }
}

/**
 * A problem as said: of an output Terraform marks sensitive, without the value it quotes (the
 * message up to its first quotation, and why there is none).
 */
function unquotedIfSensitive(outputs: unknown): (problem: Problem) => Problem {
  return (problem) => {
    const [name] = problem.path;
    const output = isJsonObject(outputs) && typeof name === "string" ? outputs[name] : undefined;
    if (!isJsonObject(output) || output.sensitive !== true) return problem;
    const quoted = problem.message.search(/"|\(got /);
    const said = quoted < 0 ? problem.message : problem.message.slice(0, quoted).trimEnd();
    return {
      ...problem,
      message: `${said} (Terraform marks the output sensitive: its value is not shown)`,
    };
  };
}

function readOutputs(
  outputs: unknown,
  options: FleetFromTerraformOptions,
  problems: Problems,
): { cacheUrl: string; region: string; documentName: string; hosts: TerraformHost[] } | undefined {
  if (!isJsonObject(outputs)) {
    return problems.add(
      [],
      `must be an object of outputs, as 'terraform output -json' prints (${got(outputs)})`,
    );
  }
  const value = (name: (typeof TERRAFORM_OUTPUTS)[number]): unknown => {
    const output = outputs[name];
    if (output === undefined) {
      return problems.add(
        [name],
        `is missing: examples/aws has the outputs ${TERRAFORM_OUTPUTS.join(", ")}`,
      );
    }
    if (!isJsonObject(output) || !("value" in output)) {
      return problems.add(
        [name],
        `must be an output as 'terraform output -json' prints it, {"sensitive", "type", "value"} (${got(output)})`,
      );
    }
    return output.value;
  };
  const cacheUrlValue = value("cache_url");
  const regionValue = value("region");
  const documentValue = value("ssm_document_name");
  const hostsValue = value("hosts");

  const cacheUrl = cacheUrlValue === undefined ? undefined : readCacheUrl(cacheUrlValue, problems);
  const region =
    regionValue === undefined
      ? undefined
      : readString(regionValue, ["region", "value"], problems, { pattern: AWS_REGION_PATTERN });
  const documentName =
    documentValue === undefined
      ? undefined
      : readString(documentValue, ["ssm_document_name", "value"], problems, {
          pattern: SSM_DOCUMENT_NAME_PATTERN,
        });
  const hosts = hostsValue === undefined ? undefined : readHosts(hostsValue, options, problems);
  if (
    cacheUrl === undefined ||
    region === undefined ||
    documentName === undefined ||
    hosts === undefined
  ) {
    return undefined;
  }
  return { cacheUrl, region, documentName, hosts };
}

function readCacheUrl(value: unknown, problems: Problems): string | undefined {
  const path = ["cache_url", "value"];
  const url = readString(value, path, problems);
  if (url === undefined) return undefined;
  const problem = inputProblem(() => parseStoreUrl(url, {}));
  return problem === undefined ? url : problems.add(path, problem);
}

function readHosts(
  value: unknown,
  options: FleetFromTerraformOptions,
  problems: Problems,
): TerraformHost[] | undefined {
  const path = ["hosts", "value"];
  if (!isJsonObject(value)) {
    return problems.add(path, `must be an object: host name → instance (${got(value)})`);
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return problems.add(path, "names no host");
  const hosts: TerraformHost[] = [];
  for (const [name, instance] of entries) {
    const host = readHost(name, instance, [...path, name], options, problems);
    if (host !== undefined) hosts.push(host);
  }
  return hosts.length === entries.length ? hosts : undefined;
}

function readHost(
  name: string,
  value: unknown,
  path: JsonPath,
  options: FleetFromTerraformOptions,
  problems: Problems,
): TerraformHost | undefined {
  const before = problems.list.length;
  if (!(NAME_PATTERN.test(name) && name.length <= NAME_MAX_LENGTH)) {
    problems.add(
      path,
      `is not a fleet host name: names must match ${NAME_PATTERN.source}, at most ${NAME_MAX_LENGTH} characters`,
    );
  }
  if (!isJsonObject(value)) {
    return problems.add(
      path,
      `must be an object {instance_id, private_ip, public_ip, tags, ssh_host_public_key} (${got(value)})`,
    );
  }
  const at = (key: string) => [...path, key];
  const instanceId = optionalText(
    value.instance_id,
    at("instance_id"),
    INSTANCE_ID_PATTERN,
    problems,
  );
  const publicIp = ipAddress(value.public_ip, at("public_ip"), problems);
  const privateIp = ipAddress(value.private_ip, at("private_ip"), problems);
  const address = publicIp ?? privateIp;
  const hostKey = readHostKey(value.ssh_host_public_key, at("ssh_host_public_key"), problems);
  if (options.via === "ssm" && isNone(value.instance_id)) {
    problems.add(
      at("instance_id"),
      "is needed for an ssm host: SSM Run Command reaches the instance by its ID",
    );
  }
  if (options.via === "ssh" && isNone(value.public_ip) && isNone(value.private_ip)) {
    problems.add(path, "an ssh host needs a public_ip or a private_ip, and this one has neither");
  }
  const tags = readTags(value.tags, at("tags"), options.tagKeys, problems);
  const system = readSystem(name, path, options, problems);
  if (problems.list.length > before || system === undefined) return undefined;
  const addresses = [publicIp, privateIp].filter((a): a is string => a !== undefined);
  return { name, instanceId, address, addresses, hostKey, tags, system };
}

/** The optional output ssh_host_public_key: an ssh-ed25519 key line, or none (null, ""). */
function readHostKey(value: unknown, path: JsonPath, problems: Problems): string | undefined {
  if (isNone(value)) return undefined;
  const text = readString(value, path, problems, { maxLength: 4096 });
  if (text === undefined) return undefined;
  const what =
    "is not an ssh-ed25519 public key line (ssh-ed25519 AAAA…), as the host module's output gives";
  if (!/^ssh-ed25519\s/.test(text.trim())) return problems.add(path, what);
  let key: string | undefined;
  const problem = inputProblem(() => {
    key = canonicalHostKey(text, "the key");
  });
  return problem === undefined ? key : problems.add(path, `${what}: ${problem}`);
}

/** The host's system: the base fleet's, else the template's. */
function readSystem(
  name: string,
  path: JsonPath,
  options: FleetFromTerraformOptions,
  problems: Problems,
): SystemSpec | undefined {
  const fromBase = baseHost(options.base, name)?.system;
  if (fromBase !== undefined) return fromBase;
  if (options.systemTemplate === undefined) {
    return problems.add(
      path,
      "is not a host of the base fleet, and no system template was given: its system is unknown",
    );
  }
  const text = options.systemTemplate.replaceAll(SYSTEM_TEMPLATE_PLACEHOLDER, name);
  return (
    systemSpec(text) ??
    problems.add(
      path,
      `the system template gives ${JSON.stringify(text)}, neither a store path nor a flake installable`,
    )
  );
}

/** A string that may be absent: null and "" (Terraform's "none") read as undefined. */
function optionalText(
  value: unknown,
  path: JsonPath,
  pattern: RegExp,
  problems: Problems,
): string | undefined {
  if (isNone(value)) return undefined;
  return readString(value, path, problems, { pattern, maxLength: 253 });
}

/** An instance's IP address (IPv4 or IPv6, as EC2 gives it), or undefined when it has none. */
function ipAddress(value: unknown, path: JsonPath, problems: Problems): string | undefined {
  const text = optionalText(value, path, ADDRESS_PATTERN, problems);
  if (text === undefined || isIP(text) !== 0) return text;
  problems.add(path, `must be an IP address, as EC2 gives an instance's (${got(text)})`);
  return undefined;
}

/** Terraform's ways of saying "none" for a string attribute. */
function isNone(value: unknown): boolean {
  return value === undefined || value === null || value === "";
}

/** The fleet tags of an instance: the values of `Role` and the other tag keys, lowercased. */
function readTags(
  value: unknown,
  path: JsonPath,
  tagKeys: readonly string[],
  problems: Problems,
): string[] {
  if (value === undefined || value === null) return [];
  if (!isJsonObject(value)) {
    problems.add(path, `must be an object: tag key → value (${got(value)})`);
    return [];
  }
  const tags: string[] = [];
  for (const key of new Set([ROLE_TAG_KEY, ...tagKeys])) {
    const tag = value[key];
    if (tag === undefined) continue;
    if (typeof tag !== "string") {
      problems.add([...path, key], `must be a string (${got(tag)})`);
      continue;
    }
    const lower = tag.toLowerCase();
    if (!(NAME_PATTERN.test(lower) && lower.length <= NAME_MAX_LENGTH)) {
      problems.add(
        [...path, key],
        `${JSON.stringify(tag)} is not a fleet tag: lowercased, tags must match ${NAME_PATTERN.source}, at most ${NAME_MAX_LENGTH} characters`,
      );
      continue;
    }
    if (!tags.includes(lower)) tags.push(lower);
  }
  return tags;
}
