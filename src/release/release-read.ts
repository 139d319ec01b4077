// The strict reader of a release's JSON value: every field present with the right type, nothing
// unknown, each problem named by its path. Pure; release-parse.ts reads bytes into it.
import { InputError } from "../errors.js";
import { ACTIONS } from "../fleet/action.js";
import { NAME_MAX_LENGTH, NAME_PATTERN } from "../fleet/fleet.js";
import {
  got,
  isJsonObject,
  type KeyShape,
  Problems,
  readArray,
  readInteger,
  readObject,
  readString,
} from "../fleet/json-check.js";
import { formatJsonPath, type JsonPath } from "../fleet/json-path.js";
import { readHealth } from "../fleet/read-policy.js";
import { type StorePath, storePathProblem } from "../nix/store-path.js";
import {
  RELEASE_KINDS,
  RELEASE_VERSION,
  type Release,
  type ReleaseHead,
  type ReleaseHost,
  type ReleaseSecrets,
  type ReleaseVersion,
  SHARD_HOSTS,
  SHARDED_RELEASE_VERSION,
  type ShardRef,
  shardCount,
} from "./release.js";

/** The fields every release head carries, whole (`hosts`) or sharded (`shards`). */
export const HEAD_FIELDS = [
  "version",
  "channel",
  "seq",
  "created",
  "expires",
  "previous",
  "kind",
  "action",
  "health",
  "confirmTimeout",
] as const;

export const KEYS = {
  sharded: { required: [...HEAD_FIELDS, "shards"], optional: ["signature", "keepGenerations"] },
  shard: { required: ["digest", "hosts"], optional: [] },
  release: { required: [...HEAD_FIELDS, "hosts"], optional: ["signature", "keepGenerations"] },
  health: { required: ["http", "commands"], optional: [] },
  httpCheck: { required: ["url", "expectStatus", "timeout"], optional: ["retry"] },
  commandCheck: { required: ["run", "timeout"], optional: ["retry"] },
  host: { required: ["path"], optional: ["secrets", "policy", "reboot", "deltaTool"] },
  reboot: { required: ["timeout", "rollback"], optional: [] },
  hostPolicy: { required: ["health", "confirmTimeout"], optional: ["keepGenerations"] },
  secrets: { required: ["bundle", "manifest"], optional: ["age"] },
} as const satisfies Record<string, KeyShape>;

const HEX_SHA256 = /^[0-9a-f]{64}$/;

const CREATED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const DIGEST = /^sha256-[A-Za-z0-9+/]{43}=$/;

const SIGNATURE = /^[^:\s]+:[A-Za-z0-9+/]+={0,2}$/;

const MAX_REPORTED = 20;

export function malformed(message: string, cause?: unknown, hint?: string): InputError {
  return new InputError("release-malformed", message, {
    ...(cause === undefined ? {} : { cause }),
    ...(hint === undefined ? {} : { hint }),
  });
}

export interface ReadValue {
  readonly head: ReleaseHead;
  readonly hosts: Release["hosts"] | undefined;
  readonly shards: readonly ShardRef[];
  readonly signature: string | undefined;
}

export function readReleaseValue(value: unknown, source: string): ReadValue {
  const problems = new Problems();
  const release = readRelease(value, problems);
  const signature = readSignature(value, problems);
  if (problems.list.length > 0 || release === undefined) {
    const lines = problems.list
      .slice(0, MAX_REPORTED)
      .map((p) => `${source}: ${formatJsonPath(p.path)}: ${p.message}`);
    if (problems.list.length > MAX_REPORTED) {
      lines.push(`${source}: … and ${problems.list.length - MAX_REPORTED} more problems`);
    }
    throw malformed(lines.join("\n"));
  }
  return { ...release, signature };
}

function readSignature(value: unknown, problems: Problems): string | undefined {
  if (!isJsonObject(value) || value.signature === undefined) return undefined;
  const signature = readString(value.signature, ["signature"], problems, { pattern: SIGNATURE });
  if (signature !== undefined && Buffer.from(signature.split(":")[1] ?? "", "base64").length !== 64)
    return problems.add(["signature"], "must hold a 64-byte ed25519 signature");
  return signature;
}

function readRelease(value: unknown, problems: Problems): Omit<ReadValue, "signature"> | undefined {
  const sharded = isJsonObject(value) && value.version === SHARDED_RELEASE_VERSION;
  const doc = readObject(value, [], problems, sharded ? KEYS.sharded : KEYS.release);
  if (doc === undefined) return undefined;
  // A missing field is already reported by readObject; each reader sees only present ones.
  const field = <T>(key: keyof Release | "shards", read: (value: unknown, path: JsonPath) => T) =>
    doc[key] === undefined ? undefined : read(doc[key], [key]);
  const name = { pattern: NAME_PATTERN, maxLength: NAME_MAX_LENGTH };
  const head = {
    version: field("version", (v, path): ReleaseVersion | undefined =>
      v === RELEASE_VERSION || v === SHARDED_RELEASE_VERSION
        ? v
        : problems.add(
            path,
            `must be ${RELEASE_VERSION} or ${SHARDED_RELEASE_VERSION}, the release versions this nixship knows (${got(v)}); a newer nixship wrote it`,
          ),
    ),
    channel: field("channel", (v, path) => readString(v, path, problems, name)),
    seq: field("seq", (v, path) => readInteger(v, path, problems, { min: 1 })),
    created: field("created", (v, path) => readCreated(v, path, problems)),
    expires: field("expires", (v, path) => {
      const expires = readCreated(v, path, problems);
      const created = typeof doc.created === "string" ? Date.parse(doc.created) : Number.NaN;
      if (expires === undefined || !(Date.parse(expires) <= created)) return expires;
      return problems.add(path, `must be later than created (${doc.created})`);
    }),
    previous: field("previous", (v, path) => readPrevious(v, path, problems)),
    kind: field("kind", (v, path) => readEnum(v, path, RELEASE_KINDS, problems)),
    action: field("action", (v, path) => readEnum(v, path, ACTIONS, problems)),
    health: field("health", (v, path) => readHealth(v, path, problems, { keys: KEYS })),
    confirmTimeout: field("confirmTimeout", (v, path) =>
      readInteger(v, path, problems, { min: 0 }),
    ),
  };
  // A rollback may name no host: it withdraws a first wave whose hosts had nothing before it.
  const hosts = sharded
    ? undefined
    : field("hosts", (v, path) => readHosts(v, path, problems, doc.kind === "rollback"));
  const shards = sharded ? field("shards", (v, path) => readShardRefs(v, path, problems)) : [];
  const keep = field("keepGenerations", (v, path) => readInteger(v, path, problems, { min: 1 }));
  if (!isComplete(head) || (hosts === undefined && !sharded) || shards === undefined) {
    return undefined;
  }
  return {
    head: keep === undefined ? head : { ...head, keepGenerations: keep },
    hosts,
    shards,
  };
}

/**
 * The shards a sharded release names: as many as its hosts call for (shardCount), so a release
 * has one stored form, and more hosts than SHARD_HOSTS (fewer are stored whole).
 */
function readShardRefs(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): readonly ShardRef[] | undefined {
  const list = readArray(value, path, problems, 1);
  if (list === undefined) return undefined;
  const refs: ShardRef[] = [];
  for (const [index, item] of list.entries()) {
    const at = [...path, index];
    const shard = readObject(item, at, problems, KEYS.shard);
    if (shard === undefined) continue;
    const digest =
      shard.digest === undefined
        ? undefined
        : readString(shard.digest, [...at, "digest"], problems, { pattern: DIGEST });
    const hosts =
      shard.hosts === undefined
        ? undefined
        : readInteger(shard.hosts, [...at, "hosts"], problems, { min: 0 });
    if (digest !== undefined && hosts !== undefined) refs.push({ digest, hosts });
  }
  if (refs.length !== list.length) return undefined;
  const total = refs.reduce((sum, ref) => sum + ref.hosts, 0);
  if (total <= SHARD_HOSTS || refs.length !== shardCount(total)) {
    return problems.add(
      path,
      `${refs.length} shards of ${total} hosts in all: a sharded release names more than ${SHARD_HOSTS} hosts, in ceil(hosts / ${SHARD_HOSTS}) shards`,
    );
  }
  return refs;
}

/** Whether every field was read; narrows away the undefined of the ones that failed. */
function isComplete<T extends object>(
  partial: T,
): partial is { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.values(partial).every((v) => v !== undefined);
}

function readEnum<T extends string>(
  value: unknown,
  path: JsonPath,
  allowed: readonly T[],
  problems: Problems,
): T | undefined {
  if ((allowed as readonly unknown[]).includes(value)) return value as T;
  return problems.add(path, `must be one of ${allowed.join(", ")} (${got(value)})`);
}

function readCreated(value: unknown, path: JsonPath, problems: Problems): string | undefined {
  const ok =
    typeof value === "string" &&
    CREATED.test(value) &&
    !Number.isNaN(Date.parse(value)) &&
    new Date(value).toISOString() === value;
  if (ok) return value;
  return problems.add(path, `must be a UTC time like 2026-11-21T10:00:00.000Z (${got(value)})`);
}

function readPrevious(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): string | null | undefined {
  if (value === null || (typeof value === "string" && DIGEST.test(value))) return value;
  return problems.add(
    path,
    `must be null or the sha256-<base64> digest of the previous release (${got(value)})`,
  );
}

/**
 * A hosts map checked entry by entry; `allowEmpty`: a shard's, which may by chance name none, or
 * a rollback's (it withdraws a first wave whose hosts had nothing before it); any other release
 * names at least one host.
 */
export function readHosts(
  value: unknown,
  at: JsonPath,
  problems: Problems,
  allowEmpty = false,
): Readonly<Record<string, ReleaseHost>> | undefined {
  if (!isJsonObject(value)) return problems.add(at, `must be an object (${got(value)})`);
  const names = Object.keys(value);
  if (names.length === 0 && !allowEmpty) return problems.add(at, "must name at least one host");
  // A host reads every entry of each new release: the parsed object is kept as it is once each
  // entry is checked, and a path is built only for a problem.
  let ok = true;
  for (const name of names) {
    if (!NAME_PATTERN.test(name) || name.length > NAME_MAX_LENGTH) {
      problems.add(
        [...at, name],
        `host name must match ${NAME_PATTERN.source} (at most ${NAME_MAX_LENGTH} characters)`,
      );
      ok = false;
      continue;
    }
    if (!isReleaseHost(value[name])) {
      // The slow path: an entry with a policy of its own, or one that is wrong.
      const before = problems.list.length;
      readReleaseHost(value[name], [...at, name], problems);
      if (problems.list.length > before) ok = false;
    }
  }
  return ok ? (value as Record<string, ReleaseHost>) : undefined;
}

/**
 * Whether `value` is `{"path": STORE_PATH}`, with well-formed `secrets` or none and a
 * well-formed `deltaTool` or none.
 */
function isReleaseHost(value: unknown): value is ReleaseHost {
  if (!isJsonObject(value)) return false;
  const tool = value.deltaTool === undefined ? 0 : 1;
  if (tool === 1 && !isStorePathText(value.deltaTool)) return false;
  const keys = Object.keys(value).length - tool;
  return (
    isStorePathText(value.path) && (keys === 1 || (keys === 2 && isReleaseSecrets(value.secrets)))
  );
}

function isStorePathText(value: unknown): value is StorePath {
  return typeof value === "string" && storePathProblem(value) === undefined;
}

function isReleaseSecrets(value: unknown): value is ReleaseSecrets {
  if (!isJsonObject(value)) return false;
  const keys = Object.keys(value).length;
  return (
    typeof value.bundle === "string" &&
    HEX_SHA256.test(value.bundle) &&
    typeof value.manifest === "string" &&
    HEX_SHA256.test(value.manifest) &&
    (keys === 2 || (keys === 3 && isStorePathText(value.age)))
  );
}

/** Records why `value` is not a host entry. */
function readReleaseHost(value: unknown, path: JsonPath, problems: Problems): void {
  const host = readObject(value, path, problems, KEYS.host);
  const text =
    host?.path === undefined ? undefined : readString(host.path, [...path, "path"], problems);
  const problem = text === undefined ? undefined : storePathProblem(text);
  if (problem !== undefined) problems.add([...path, "path"], problem);
  if (host?.policy !== undefined) readHostPolicy(host.policy, [...path, "policy"], problems);
  if (host?.deltaTool !== undefined) {
    const tool = readString(host.deltaTool, [...path, "deltaTool"], problems);
    const toolProblem = tool === undefined ? undefined : storePathProblem(tool);
    if (toolProblem !== undefined) problems.add([...path, "deltaTool"], toolProblem);
  }
  if (host?.reboot !== undefined) {
    const reboot = readObject(host.reboot, [...path, "reboot"], problems, KEYS.reboot);
    if (reboot?.timeout !== undefined) {
      readInteger(reboot.timeout, [...path, "reboot", "timeout"], problems, { min: 1 });
    }
    if (reboot?.rollback !== undefined && typeof reboot.rollback !== "boolean") {
      problems.add(
        [...path, "reboot", "rollback"],
        `must be true or false (${got(reboot.rollback)})`,
      );
    }
  }
  if (host?.secrets === undefined) return;
  const at = [...path, "secrets"];
  const secrets = readObject(host.secrets, at, problems, KEYS.secrets);
  if (secrets === undefined) return;
  for (const key of ["bundle", "manifest"] as const) {
    if (secrets[key] !== undefined) {
      readString(secrets[key], [...at, key], problems, { pattern: HEX_SHA256 });
    }
  }
  if (secrets.age !== undefined) {
    const age = readString(secrets.age, [...at, "age"], problems);
    const ageProblem = age === undefined ? undefined : storePathProblem(age);
    if (ageProblem !== undefined) problems.add([...at, "age"], ageProblem);
  }
}

/** Records why `value` is not an entry's policy (the keys and values a release's checks take). */
function readHostPolicy(value: unknown, path: JsonPath, problems: Problems): void {
  const policy = readObject(value, path, problems, KEYS.hostPolicy);
  if (policy === undefined) return;
  if (policy.health !== undefined) {
    readHealth(policy.health, [...path, "health"], problems, { keys: KEYS });
  }
  if (policy.confirmTimeout !== undefined) {
    readInteger(policy.confirmTimeout, [...path, "confirmTimeout"], problems, { min: 0 });
  }
  if (policy.keepGenerations !== undefined) {
    readInteger(policy.keepGenerations, [...path, "keepGenerations"], problems, { min: 1 });
  }
}
