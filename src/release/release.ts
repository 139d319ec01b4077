// Signed releases: the manifest that tells a channel's hosts which system to run. Pure: the
// stored form (canonical JSON + signature), strict parsing, signature checks and sequence rules.
import { InputError } from "../errors.js";
import { ACTIONS, type Action } from "../fleet/action.js";
import { type HealthChecks, NAME_MAX_LENGTH, NAME_PATTERN } from "../fleet/fleet.js";
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
import { findDuplicateKey, parseJsonText } from "../fleet/json-text.js";
import { readHealth } from "../fleet/read-policy.js";
import { Sha256 } from "../nix/hash.js";
import { type PublicKey, type SecretKey, signDetached, verifyDetached } from "../nix/keys.js";
import { type StorePath, storePathProblem } from "../nix/store-path.js";

/** The version of a release that holds its hosts map (every release of at most SHARD_HOSTS hosts). */
export const RELEASE_VERSION = 1;
/**
 * The version of a sharded release: its file (the head) names, instead of the hosts map, the
 * digest and host count of each shard (release-shard.ts), which holds the entries of its hosts.
 * An agent older than it refuses it (the version is not one it knows).
 */
export const SHARDED_RELEASE_VERSION = 2;
export type ReleaseVersion = typeof RELEASE_VERSION | typeof SHARDED_RELEASE_VERSION;

/**
 * The most hosts a release names in one file: one naming more is published sharded, so that an
 * agent's work for a release does not grow with the fleet (one head of a few kB, one shard).
 */
export const SHARD_HOSTS = 256;

/** How many shards a sharded release of `hosts` hosts has. */
export function shardCount(hosts: number): number {
  return Math.ceil(hosts / SHARD_HOSTS);
}
/**
 * Put before the canonical JSON in the signed message, so a release signature can never pass as
 * a narinfo signature (whose fingerprint starts "1;/nix/store/"), nor the reverse.
 */
export const RELEASE_SIGNATURE_CONTEXT = "nixship-release-v1\n";

export const RELEASE_KINDS = ["deploy", "rollback", "refresh"] as const;
/**
 * rollback: a new, higher-numbered release that points hosts back at older paths; refresh: the
 * channel's release signed again with a later `expires` (`nixship release refresh`).
 */
export type ReleaseKind = (typeof RELEASE_KINDS)[number];

export interface ReleaseHost {
  readonly path: StorePath;
  /** The host's secrets; absent: the agent leaves the host's secrets as they are. */
  readonly secrets?: ReleaseSecrets;
  /**
   * The host's own checks (the fleet's policy per role), where they differ from the
   * release's; absent: the release's.
   */
  readonly policy?: ReleaseHostPolicy;
  /**
   * Reboot into the system (`deploy --reboot`): the agent sets it for the next boot, reboots,
   * and judges it after the boot; absent: a switch.
   */
  readonly reboot?: ReleaseReboot;
  /**
   * A store path whose bin/zstd rebuilds, from the cache's deltas, the paths of `path` the host
   * can (`nixship-activate --delta-tool`, docs/deltas.md), realised from the cache with the
   * cache's signatures required; absent: every path whole. An agent older than this field
   * refuses a release whose entries carry it (an unknown key): docs/agent.md, "Deltas".
   */
  readonly deltaTool?: StorePath;
}

/** How an agent reboots into its entry's system. */
export interface ReleaseReboot {
  /** Seconds the host has to come back on the new system. */
  readonly timeout: number;
  /** A host that fails after the reboot is rebooted into the previous system too. */
  readonly rollback: boolean;
}

/** A host's checks and limits in place of the release's (`Release` holds the same fields). */
export interface ReleaseHostPolicy {
  readonly health: HealthChecks;
  readonly confirmTimeout: number;
  readonly keepGenerations?: number;
}

/** The checks an agent applies for `host`: its entry's own, else the release's. */
export function checksFor(
  release: Pick<Release, "health" | "confirmTimeout" | "keepGenerations">,
  host: Pick<ReleaseHost, "policy"> | undefined,
): ReleaseHostPolicy {
  const from = host?.policy ?? release;
  return {
    health: from.health,
    confirmTimeout: from.confirmTimeout,
    ...(from.keepGenerations ? { keepGenerations: from.keepGenerations } : {}),
  };
}

/**
 * A host's secrets bundle, kept in the store at `secrets/HOST/BUNDLE` (ciphertexts only): the
 * release signs its digest, so a bundle changed in the store is refused.
 */
export interface ReleaseSecrets {
  /** sha256 (hex) of the bundle. */
  readonly bundle: string;
  /** The bundle's manifest digest: what the host's status reports once it is installed. */
  readonly manifest: string;
  /** A store path whose bin/age decrypts them; absent: age from the host's PATH. */
  readonly age?: StorePath;
}

export interface Release {
  /** 1: stored whole; 2: stored as a head and its shards (the hosts map is theirs, joined). */
  readonly version: ReleaseVersion;
  readonly channel: string;
  /** ≥ 1; a channel's releases are numbered in the order they were published. */
  readonly seq: number;
  /** ISO-8601 UTC with milliseconds, as `Date.prototype.toISOString` prints it. */
  readonly created: string;
  /**
   * When the release stops being valid, in the same form: hosts refuse it from then on, so a
   * channel frozen on an old release (by someone who can write the bucket but holds no release
   * key) stops being followed. Later than `created`.
   */
  readonly expires: string;
  /** The digest of the channel's release this one replaced; null for the first. */
  readonly previous: string | null;
  readonly kind: ReleaseKind;
  readonly action: Action;
  readonly health: HealthChecks;
  /** Seconds a host waits for confirmation before it rolls back; 0 disables. */
  readonly confirmTimeout: number;
  /**
   * After a confirmed activation, hosts keep their newest N generations (and the rollback
   * target), remove the rest and collect garbage; absent: they keep everything.
   */
  readonly keepGenerations?: number;
  /** Host name → what it runs. */
  readonly hosts: Readonly<Record<string, ReleaseHost>>;
}

/** One shard of a sharded release, as its head names it: the digest of its bytes, its hosts. */
export interface ShardRef {
  /** `sha256-<base64>` (SRI) of the shard's stored bytes. */
  readonly digest: string;
  /** How many hosts the shard names. */
  readonly hosts: number;
}

/**
 * A release file as stored, parsed but not checked against any key: a whole release (version 1,
 * `hosts`), or a sharded release's head (version 2, `shards`), whose hosts are in its shards.
 */
export interface ParsedHead {
  readonly head: ReleaseHead;
  /** Version 1: every host's entry. Undefined for a sharded release. */
  readonly hosts: Release["hosts"] | undefined;
  /** Version 2: the shards, in order of their index. Empty for version 1. */
  readonly shards: readonly ShardRef[];
  readonly signature: string | undefined;
  /** `sha256-<base64>` (SRI) of `bytes`: what the next release names as `previous`. */
  readonly digest: string;
  /** The stored form, byte for byte. */
  readonly bytes: Uint8Array;
  /** What a signature covers (see releaseSignedMessage). */
  readonly message: string;
}

export interface SignedHead extends ParsedHead {
  readonly signature: string;
}

/** A shard as stored (release-shard.ts): its place, its digest and its bytes. */
export interface StoredShard extends ShardRef {
  readonly index: number;
  readonly bytes: Uint8Array;
}

/**
 * A release as stored, parsed but not (yet) checked against any key, with its whole hosts map
 * (for a sharded release, joined from its shards, each checked against its digest).
 */
export interface ParsedRelease {
  readonly release: Release;
  /** Version 2: its shards (bytes included, each matching its digest); empty for version 1. */
  readonly shards?: readonly StoredShard[];
  /** `keyname:base64`; undefined when the stored form carries none. */
  readonly signature: string | undefined;
  /** `sha256-<base64>` (SRI) of `bytes`: what the next release names as `previous`. */
  readonly digest: string;
  /** The stored form, byte for byte. */
  readonly bytes: Uint8Array;
  /** What a signature covers (see releaseSignedMessage). */
  readonly message: string;
}

export interface SignedRelease extends ParsedRelease {
  readonly signature: string;
}

/** A release without its hosts map: what one host keeps of a release it applies. */
export type ReleaseHead = Omit<Release, "hosts">;

export function headOf(release: Release): ReleaseHead {
  const { hosts: _hosts, ...head } = release;
  return head;
}

export type SequenceCheck =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** stale: older than the release last applied; same: that very release. */
      readonly reason: "stale" | "same";
      readonly seq: number;
      readonly lastApplied: number;
    };

/** The fields every release head carries, whole (`hosts`) or sharded (`shards`). */
const HEAD_FIELDS = [
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

const KEYS = {
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

/**
 * JSON with every object's keys sorted (by UTF-16 code unit, which for the ASCII keys of a
 * release is byte order) and no whitespace: one text per value, so signatures and digests
 * do not depend on how a writer happened to order keys.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (isJsonObject(value)) {
    const entries = Object.keys(value)
      .filter((key) => value[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`);
    return `{${entries.join(",")}}`;
  }
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new TypeError(`canonicalJson: ${value} has no JSON form`);
  }
  return JSON.stringify(value);
}

/** The release's fields as plain JSON, whatever extra properties the objects carry. */
function releaseJson(release: Release): Record<string, unknown> {
  return {
    ...fieldsBesideHosts(release),
    hosts: Object.fromEntries(
      Object.entries(release.hosts).map(([name, host]) => [name, hostJson(host)]),
    ),
  };
}

function fieldsBesideHosts(release: ReleaseHead): Record<string, unknown> {
  return {
    version: release.version,
    channel: release.channel,
    seq: release.seq,
    created: release.created,
    expires: release.expires,
    previous: release.previous,
    kind: release.kind,
    action: release.action,
    ...checksJson(release),
  };
}

/** health, confirmTimeout and keepGenerations, as a release (or an entry's policy) holds them. */
function checksJson(checks: ReleaseHostPolicy): Record<string, unknown> {
  return {
    health: {
      // retry is written only when false, so that a release without it has the bytes it had.
      http: checks.health.http.map(({ url, expectStatus, timeout, retry }) => ({
        url,
        expectStatus,
        timeout,
        ...(retry === false ? { retry } : {}),
      })),
      commands: checks.health.commands.map(({ run, timeout, retry }) => ({
        run,
        timeout,
        ...(retry === false ? { retry } : {}),
      })),
    },
    confirmTimeout: checks.confirmTimeout,
    // Written only when set, so that a release without it has the bytes it always had.
    ...(checks.keepGenerations ? { keepGenerations: checks.keepGenerations } : {}),
  };
}

function hostJson(host: ReleaseHost): Record<string, unknown> {
  const policy = {
    ...(host.policy === undefined ? {} : { policy: checksJson(host.policy) }),
    ...(host.reboot === undefined
      ? {}
      : { reboot: { timeout: host.reboot.timeout, rollback: host.reboot.rollback } }),
    ...(host.deltaTool === undefined ? {} : { deltaTool: host.deltaTool }),
  };
  if (host.secrets === undefined) return { path: host.path, ...policy };
  const { bundle, manifest, age } = host.secrets;
  return {
    path: host.path,
    secrets: { bundle, manifest, ...(age === undefined ? {} : { age }) },
    ...policy,
  };
}

/**
 * canonicalJson of the hosts map as releaseJson gives it, without copying it first (a sharded
 * release's shards hold their hosts in this form too).
 */
export function canonicalHosts(hosts: Release["hosts"]): string {
  const names = Object.keys(hosts).sort();
  const entries = names.map((name) => {
    const host = hosts[name];
    const path = `{"path":${jsonString(host?.path ?? "")}`;
    if (host?.policy !== undefined || host?.reboot !== undefined || host?.deltaTool !== undefined) {
      return `${jsonString(name)}:${canonicalJson(hostJson(host))}`;
    }
    return host?.secrets === undefined
      ? `${jsonString(name)}:${path}}`
      : `${jsonString(name)}:${path},"secrets":${canonicalJson(hostJson(host).secrets)}}`;
  });
  return `{${entries.join(",")}}`;
}

/** Printable ASCII but the quote and the backslash: what JSON.stringify leaves as it is. */
const PLAIN_JSON_STRING = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** JSON.stringify of a string; host names and store paths are plain, and quoted directly. */
function jsonString(text: string): string {
  return PLAIN_JSON_STRING.test(text) ? `"${text}"` : JSON.stringify(text);
}

/** What the signature covers: the context line, then the canonical release without signature. */
export function releaseSignedMessage(release: Release): string {
  return canonicalForms(headOf(release), { hosts: release.hosts }, undefined).message;
}

/** What a release file holds beside its head: the hosts map (version 1) or the shards (2). */
type Body = { readonly hosts: Release["hosts"] } | { readonly shards: readonly ShardRef[] };

/**
 * The signed message and the stored text of one release, from one serialisation of its fields
 * (the hosts map is most of a release; a host verifies each release it reads, so this is done
 * once, not once for the message and once for the canonical check). The top-level keys are
 * sorted as canonicalJson sorts them, so `stored` is canonicalJson of the fields plus signature.
 */
function canonicalForms(
  release: ReleaseHead,
  body: Body,
  signature: string | undefined,
): { message: string; stored: string } {
  const fields = fieldsBesideHosts(release);
  const parts = new Map<string, string>(
    "hosts" in body
      ? [["hosts", `"hosts":${canonicalHosts(body.hosts)}`]]
      : [
          [
            "shards",
            `"shards":${canonicalJson(body.shards.map(({ digest, hosts }) => ({ digest, hosts })))}`,
          ],
        ],
  );
  for (const key of Object.keys(fields)) {
    parts.set(key, `${JSON.stringify(key)}:${canonicalJson(fields[key])}`);
  }
  const join = (keys: string[]) => `{${keys.map((k) => parts.get(k)).join(",")}}`;
  const keys = [...parts.keys()].sort();
  const message = RELEASE_SIGNATURE_CONTEXT + join(keys);
  if (signature === undefined) return { message, stored: `${join(keys)}\n` };
  parts.set("signature", `"signature":${JSON.stringify(signature)}`);
  return { message, stored: `${join([...keys, "signature"].sort())}\n` };
}

/** `sha256-<base64>` of the stored bytes. */
export function releaseDigest(bytes: Uint8Array): string {
  return Sha256.of(bytes).format("sri");
}

/**
 * Signs `release` as one file of version 1 (its hosts map included) and gives its stored form. A
 * release that would not parse back is refused. (signRelease in release-shard.ts picks between
 * this and the sharded form by the number of hosts.)
 */
export function formatRelease(release: Release, key: SecretKey): SignedRelease {
  const checked = checkRelease(release);
  const body = { hosts: checked.hosts };
  const { message } = canonicalForms(checked, body, undefined);
  const signature = signDetached(key, message);
  const bytes = new Uint8Array(Buffer.from(canonicalForms(checked, body, signature).stored));
  return { release: checked, signature, digest: releaseDigest(bytes), bytes, message };
}

/**
 * `release` read back as a host reads a version 1 release (the version set to 1), so nothing is
 * signed that hosts would refuse; an InputError (release-malformed) says what is wrong.
 */
export function checkRelease(release: Release): Release {
  const fields = { ...releaseJson(release), version: RELEASE_VERSION };
  const read = readReleaseValue(fields, "the release to sign");
  return { ...read.head, hosts: read.hosts as Release["hosts"] };
}

/**
 * Signs the head of a sharded release (version 2): `release`'s fields beside its hosts, and the
 * shards (release-shard.ts made them) in place of the hosts map. Gives the head's stored form.
 */
export function formatShardedHead(
  release: ReleaseHead,
  shards: readonly ShardRef[],
  key: SecretKey,
): SignedHead {
  const fields = {
    ...fieldsBesideHosts({ ...release, version: SHARDED_RELEASE_VERSION }),
    shards: shards.map(({ digest, hosts }) => ({ digest, hosts })),
  };
  const read = readReleaseValue(fields, "the release to sign");
  const { message } = canonicalForms(read.head, { shards: read.shards }, undefined);
  const signature = signDetached(key, message);
  const stored = canonicalForms(read.head, { shards: read.shards }, signature).stored;
  const bytes = new Uint8Array(Buffer.from(stored));
  return { ...read, hosts: undefined, signature, digest: releaseDigest(bytes), bytes, message };
}

/**
 * Parses a stored release of version 1 (a whole release) strictly; see parseReleaseHead. A
 * sharded release is refused here: its hosts are in its shards (release-shard.ts joins them,
 * and release-store.ts reads them).
 */
export function parseRelease(bytes: Uint8Array, source: string): ParsedRelease {
  return wholeRelease(parseReleaseHead(bytes, source), source);
}

/** The release of a version 1 file; a sharded one fails with release-sharded. */
function wholeRelease<T extends ParsedHead>(
  parsed: T,
  source: string,
): Omit<T, "head" | "hosts" | "shards"> & { release: Release } {
  const { head, hosts, shards: _shards, ...rest } = parsed;
  if (hosts !== undefined) return { ...rest, release: { ...head, hosts } };
  throw new InputError(
    "release-sharded",
    `${source}: release ${head.seq} of channel ${head.channel} is sharded: its hosts are in its ${parsed.shards.length} shards`,
    { hint: "read it with its shards (release-store's readers join them)" },
  );
}

/**
 * Parses a stored release file strictly: every field present with the right type, nothing
 * unknown, and the bytes in canonical form (so one release has one digest). Checks no signature.
 * `source` names the bytes in errors (a file, an object key). A sharded release gives its head
 * and its shards' digests; its shards are not read here.
 */
export function parseReleaseHead(bytes: Uint8Array, source: string): ParsedHead {
  // TextDecoder drops a byte-order mark; the release would then have two stored forms.
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw malformed(
      `${source}: starts with a byte-order mark: a release is exactly its canonical bytes`,
      undefined,
      "releases are written by nixship and must not be edited by hand",
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw malformed(`${source}: is not UTF-8 text`, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Only a text that does not parse pays for the error with line and column.
    detailedJsonError(text, source);
    throw malformed(`${source}: is not JSON (a byte-order mark is not allowed)`);
  }
  let read: ReturnType<typeof readReleaseValue>;
  try {
    read = readReleaseValue(value, source);
  } catch (err) {
    // A duplicate key (JSON.parse keeps the last) is the better explanation when there is one.
    refuseDuplicateHost(text, value, source);
    detailedJsonError(text, source);
    throw err;
  }
  const { head: release, signature } = read;
  const body: Body = read.hosts !== undefined ? { hosts: read.hosts } : { shards: read.shards };
  const { message, stored } = canonicalForms(release, body, signature);
  if (text !== stored) {
    // A duplicate key is one way to differ (JSON.parse keeps the last); name it if so.
    refuseDuplicateHost(text, value, source);
    detailedJsonError(text, source);
    throw malformed(
      `${source}: release ${release.seq} of channel ${release.channel} is not in canonical form (keys sorted, no whitespace, one final newline)`,
      undefined,
      "releases are written by nixship and must not be edited by hand",
    );
  }
  return { ...read, digest: releaseDigest(bytes), bytes, message };
}

/**
 * Throws release-host-twice when `text` (which JSON.parse took: `value`) names a host twice in
 * its `hosts` (JSON.parse would keep the last entry); a release file's or a shard's.
 */
export function refuseDuplicateHost(text: string, value: unknown, source: string): void {
  const duplicate = findDuplicateKey(text);
  if (duplicate === undefined || duplicate.path.length !== 1 || duplicate.path[0] !== "hosts") {
    return;
  }
  const doc = isJsonObject(value) ? value : {};
  const what = `release ${String(doc.seq)} of channel ${String(doc.channel)}`;
  const index = typeof doc.index === "number" ? doc.index : undefined;
  throw hostTwice(
    `${source}: ${what} names host '${duplicate.key}' twice${index === undefined ? "" : ` in shard ${index}`}`,
  );
}

/**
 * The error every reader, the agent and the publisher give a release that names a host twice:
 * twice in one file or shard, or in a shard that is not its own (release-shard.ts).
 */
export function hostTwice(message: string): InputError {
  return new InputError("release-host-twice", message, {
    hint: "a release names each host once (in a sharded release, in the one shard its name hashes to), and nixship's publisher writes no other: do not deploy it; publish a new release",
  });
}

/**
 * Whether `err` is hostTwice's refusal: one every reader gives the release's signed bytes alike,
 * the agents included, so no host runs that release (where a shard missing is the store's).
 */
export function isHostTwice(err: unknown): boolean {
  return err instanceof InputError && err.code === "release-host-twice";
}

/** Throws the parse error parseJsonText gives `text` (line, column, duplicate keys), if any. */
function detailedJsonError(text: string, source: string): void {
  try {
    parseJsonText(text, source);
  } catch (err) {
    if (err instanceof InputError) throw malformed(err.message, err, err.hint);
    throw err;
  }
}

/**
 * Parses a release of version 1, then checks the signature against the trusted keys; see
 * verifyReleaseHead (and release-sharded for a sharded release).
 */
export function verifyRelease(
  bytes: Uint8Array,
  trustedKeys: readonly PublicKey[],
  source: string,
): SignedRelease {
  return wholeRelease(verifyReleaseHead(bytes, trustedKeys, source), source);
}

/**
 * Parses a release file (a whole release, or a sharded release's head), then checks the
 * signature against the trusted keys. Each failure is an InputError: release-unsigned,
 * release-untrusted-key, release-bad-signature (or release-malformed). A sharded release's
 * signature covers its shards' digests, so each shard is trusted by its digest alone.
 */
export function verifyReleaseHead(
  bytes: Uint8Array,
  trustedKeys: readonly PublicKey[],
  source: string,
): SignedHead {
  const parsed = parseReleaseHead(bytes, source);
  const { head: release, signature } = parsed;
  const what = `${source}: release ${release.seq} of channel ${release.channel}`;
  if (signature === undefined) {
    throw new InputError("release-unsigned", `${what} is not signed`, {
      hint: "hosts only follow signed releases; publish it again with a release key",
    });
  }
  const keyName = signature.slice(0, signature.indexOf(":"));
  const check = verifyDetached(signature, parsed.message, trustedKeys);
  if (check.ok) return { ...parsed, signature };
  switch (check.reason) {
    case "untrusted-key": {
      const trusted = trustedKeys.map((k) => k.name).join(", ") || "none";
      throw new InputError(
        "release-untrusted-key",
        `${what} is signed by key '${keyName}', which is not trusted (trusted: ${trusted})`,
        { hint: `trust the public half of '${keyName}' only if that key should publish releases` },
      );
    }
    case "bad-signature":
      throw new InputError(
        "release-bad-signature",
        `${what}: the signature by key '${keyName}' does not match its content`,
        { hint: "the release was changed after it was signed; do not deploy it" },
      );
    case "malformed":
      throw malformed(`${what}: the signature is not NAME:BASE64 of an ed25519 signature`);
  }
}

/**
 * The release file (a whole release or a sharded release's head) if one of the keys signed
 * exactly these bytes, else undefined (malformed, unsigned, untrusted or tampered: a reader
 * passing over what no host would follow).
 */
export function trustedHead(
  bytes: Uint8Array,
  trustedKeys: readonly PublicKey[],
  source: string,
): SignedHead | undefined {
  try {
    return verifyReleaseHead(bytes, trustedKeys, source);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return undefined;
  }
}

/** Whether a host that last applied `lastAppliedSeq` should apply `release`. */
export function checkSequence(
  release: ReleaseHead,
  lastAppliedSeq: number | undefined,
): SequenceCheck {
  if (lastAppliedSeq === undefined || release.seq > lastAppliedSeq) return { ok: true };
  return {
    ok: false,
    reason: release.seq === lastAppliedSeq ? "same" : "stale",
    seq: release.seq,
    lastApplied: lastAppliedSeq,
  };
}

export type ExpiryCheck = { readonly ok: true } | { readonly ok: false; readonly message: string };

/** Whether `release` is still valid at `now` (before its `expires`). */
export function checkExpiry(release: ReleaseHead, now: Date): ExpiryCheck {
  if (now.getTime() < Date.parse(release.expires)) return { ok: true };
  return {
    ok: false,
    message: `release ${release.seq} of channel ${release.channel} expired at ${release.expires} (it is ${now.toISOString()}): a channel that is not renewed may be frozen on an old release; the publisher renews it with 'nixship release refresh'`,
  };
}

/** Whether `release` comes after `other` (or there is no other) in its channel. */
export function isNewer(release: Release, other: Release | undefined): boolean {
  return checkSequence(release, other?.seq).ok;
}

export function malformed(message: string, cause?: unknown, hint?: string): InputError {
  return new InputError("release-malformed", message, {
    ...(cause === undefined ? {} : { cause }),
    ...(hint === undefined ? {} : { hint }),
  });
}

interface ReadValue {
  readonly head: ReleaseHead;
  readonly hosts: Release["hosts"] | undefined;
  readonly shards: readonly ShardRef[];
  readonly signature: string | undefined;
}

function readReleaseValue(value: unknown, source: string): ReadValue {
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
