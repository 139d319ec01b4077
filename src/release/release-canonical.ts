// The stored form of a release: canonical JSON (keys sorted, no whitespace), the message its
// signature covers, and its digest. One serialisation per release, shared by signing and reading.
import { isJsonObject } from "../fleet/json-check.js";
import { Sha256 } from "../nix/hash.js";
import {
  headOf,
  RELEASE_SIGNATURE_CONTEXT,
  type Release,
  type ReleaseHead,
  type ReleaseHost,
  type ReleaseHostPolicy,
  type ShardRef,
} from "./release.js";

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
export function releaseJson(release: Release): Record<string, unknown> {
  return {
    ...fieldsBesideHosts(release),
    hosts: Object.fromEntries(
      Object.entries(release.hosts).map(([name, host]) => [name, hostJson(host)]),
    ),
  };
}

export function fieldsBesideHosts(release: ReleaseHead): Record<string, unknown> {
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
export type Body = { readonly hosts: Release["hosts"] } | { readonly shards: readonly ShardRef[] };

/**
 * The signed message and the stored text of one release, from one serialisation of its fields
 * (the hosts map is most of a release; a host verifies each release it reads, so this is done
 * once, not once for the message and once for the canonical check). The top-level keys are
 * sorted as canonicalJson sorts them, so `stored` is canonicalJson of the fields plus signature.
 */
export function canonicalForms(
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
