// The `hosts` section of the fleet file: names, tags, delivery mode and what each mode needs,
// and the system each host should run.

import { parseRecipient } from "../age/age.js";
import { InputError } from "../errors.js";
import { parseStorePath, STORE_DIR, type StorePath } from "../nix/store-path.js";
import {
  ADDRESS_MAX_LENGTH,
  ADDRESS_PATTERN,
  ADDRESS_PLACEHOLDER,
  DELIVERY_MODES,
  type DeliveryMode,
  FLAKE_INSTALLABLE_PATTERN,
  type FleetHost,
  INSTANCE_ID_PATTERN,
  NAME_MAX_LENGTH,
  NAME_PATTERN,
  SSH_HOST_PATTERN,
  SSH_USER_PATTERN,
  type SystemSpec,
} from "./fleet.js";
import { FLEET_KEYS } from "./fleet-keys.js";
import {
  got,
  inputProblem,
  isJsonObject,
  type Problems,
  readArray,
  readObject,
  readString,
} from "./json-check.js";
import type { JsonPath } from "./json-path.js";
import { readSsmTargets } from "./read-ssm.js";

const NAME_RULE = { pattern: NAME_PATTERN, maxLength: NAME_MAX_LENGTH };

export function readHosts(value: unknown, problems: Problems): FleetHost[] | undefined {
  if (!isJsonObject(value)) return problems.add(["hosts"], `must be an object (${got(value)})`);
  const entries = Object.entries(value);
  if (entries.length === 0) {
    return problems.add(["hosts"], 'must name at least one host, e.g. {"web1": {...}}');
  }
  const hosts: FleetHost[] = [];
  for (const [name, hostValue] of entries) {
    const path = ["hosts", name];
    if (!(NAME_PATTERN.test(name) && name.length <= NAME_MAX_LENGTH)) {
      problems.add(
        path,
        `host names must match ${NAME_PATTERN.source}, at most ${NAME_MAX_LENGTH} characters`,
      );
    }
    const host = readHost(name, hostValue, path, problems);
    if (host !== undefined) hosts.push(host);
  }
  // One instance is one host: two hosts on one would each have it switch to its own system.
  const byInstance = new Map<string, string>();
  for (const host of hosts) {
    if (host.delivery !== "ssm" || host.instanceId === undefined) continue;
    const first = byInstance.get(host.instanceId);
    if (first === undefined) byInstance.set(host.instanceId, host.name);
    else {
      problems.add(
        ["hosts", host.name, "instanceId"],
        `${host.instanceId} is host ${first}'s instance too: one instance is one host`,
      );
    }
  }
  // Only every host, or none: what is checked against the hosts (a policy's or a secret's
  // selector) would otherwise say "no host is named db1" of a host that is there, with a bad
  // field of its own.
  return hosts.length === entries.length ? hosts : undefined;
}

function readHost(
  name: string,
  value: unknown,
  path: JsonPath,
  problems: Problems,
): FleetHost | undefined {
  const host = readObject(value, path, problems, FLEET_KEYS.host);
  if (host === undefined) return undefined;
  const at = (key: string) => [...path, key];
  const tags = host.tags === undefined ? [] : readTags(host.tags, at("tags"), problems);
  const text = (key: string, rule: { pattern: RegExp; maxLength: number }) =>
    host[key] === undefined ? undefined : readString(host[key], at(key), problems, rule);
  const address =
    host.address === ADDRESS_PLACEHOLDER
      ? problems.add(
          at("address"),
          "is the placeholder 'nixship init' wrote: fill in the host's address (a hostname or IP)",
        )
      : text("address", { pattern: ADDRESS_PATTERN, maxLength: ADDRESS_MAX_LENGTH });
  const sshHost = text("sshHost", { pattern: SSH_HOST_PATTERN, maxLength: 253 });
  const sshUser = text("sshUser", { pattern: SSH_USER_PATTERN, maxLength: 32 });
  const instanceId = text("instanceId", { pattern: INSTANCE_ID_PATTERN, maxLength: 19 });
  const targets =
    host.targets === undefined ? undefined : readSsmTargets(host.targets, at("targets"), problems);
  const system =
    host.system === undefined ? undefined : readSystem(host.system, at("system"), problems);
  const delivery = readDelivery(host.delivery, at("delivery"), problems);
  if (delivery === undefined) return undefined;

  const onlyFor = (key: string, mode: DeliveryMode) => {
    if (host[key] !== undefined)
      problems.add(at(key), `is only allowed when delivery is "${mode}"`);
  };
  if (delivery !== "ssh") {
    onlyFor("sshHost", "ssh");
    onlyFor("sshUser", "ssh");
    onlyFor("sudo", "ssh");
  }
  let sudo: boolean | undefined;
  if (delivery === "ssh" && host.sudo !== undefined) {
    if (typeof host.sudo === "boolean") sudo = host.sudo;
    else problems.add(at("sudo"), `must be true or false (${got(host.sudo)})`);
  }
  let hostKey: string | undefined;
  if (delivery === "ssh" && host.hostKey !== undefined) {
    problems.add(
      at("hostKey"),
      "is only for ssm and agent hosts: an ssh host's key is read from the fleet's known_hosts",
    );
  } else if (host.hostKey !== undefined) {
    hostKey = readHostKey(host.hostKey, at("hostKey"), problems);
  }
  if (delivery !== "ssm") {
    onlyFor("instanceId", "ssm");
    onlyFor("targets", "ssm");
  }
  if (delivery === "ssh" && host.address === undefined && host.sshHost === undefined) {
    problems.add(path, 'an ssh host needs "address" or "sshHost"');
  }
  const hasInstanceId = host.instanceId !== undefined;
  const hasTargets = host.targets !== undefined;
  if (delivery === "ssm" && !hasInstanceId && !hasTargets) {
    problems.add(path, 'an ssm host needs "instanceId" or "targets"');
  }
  if (delivery === "ssm" && hasInstanceId && hasTargets) {
    problems.add(path, 'an ssm host takes "instanceId" or "targets", not both');
  }
  if (tags === undefined || system === undefined) return undefined;
  const common = { name, tags, address, system, hostKey };
  switch (delivery) {
    case "ssh":
      return {
        ...common,
        delivery,
        sshHost,
        ...(sudo === undefined ? {} : { sudo }),
        ...(sshUser === undefined ? {} : { sshUser }),
      };
    case "ssm":
      // Exactly one of the two, or a problem was recorded above.
      if ((instanceId === undefined) === (targets === undefined)) return undefined;
      return { ...common, delivery, instanceId, targets };
    case "agent":
      return { ...common, delivery };
  }
}

/** An SSH host ed25519 public key, `ssh-ed25519 AAAA… [comment]`. */
function readHostKey(value: unknown, path: JsonPath, problems: Problems): string | undefined {
  const text = readString(value, path, problems);
  if (text === undefined) return undefined;
  const problem = inputProblem(() => {
    if (parseRecipient(text, "hostKey").kind !== "ssh-ed25519") {
      throw new InputError("bad-host-key", 'must be an SSH host key: "ssh-ed25519 AAAA…"');
    }
  });
  return problem === undefined ? text : problems.add(path, problem);
}

function readTags(value: unknown, path: JsonPath, problems: Problems): string[] | undefined {
  const items = readArray(value, path, problems);
  if (items === undefined) return undefined;
  const tags: string[] = [];
  items.forEach((item, i) => {
    const tag = readString(item, [...path, i], problems, NAME_RULE);
    if (tag === undefined) return;
    if (tags.includes(tag)) problems.add([...path, i], `repeats the tag "${tag}"`);
    else tags.push(tag);
  });
  return tags;
}

function readDelivery(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): DeliveryMode | undefined {
  if (value === undefined) return "ssh";
  if ((DELIVERY_MODES as readonly unknown[]).includes(value)) return value as DeliveryMode;
  return problems.add(path, `must be one of ${DELIVERY_MODES.join(", ")} (${got(value)})`);
}

function readSystem(value: unknown, path: JsonPath, problems: Problems): SystemSpec | undefined {
  if (typeof value === "string" && value.startsWith(`${STORE_DIR}/`)) {
    const problem = inputProblem(() => parseStorePath(value, "the store path"));
    if (problem !== undefined) return problems.add(path, problem);
    return { kind: "store-path", path: value as StorePath };
  }
  if (typeof value === "string" && FLAKE_INSTALLABLE_PATTERN.test(value)) {
    return { kind: "flake", installable: value };
  }
  return problems.add(
    path,
    `must be a store path (${STORE_DIR}/<hash>-<name>) or a flake installable such as ".#web" (${got(value)})`,
  );
}
