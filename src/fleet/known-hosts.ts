// Merging hosts' SSH host keys into a known_hosts file (OpenSSH's format, sshd(8) "SSH_KNOWN_HOSTS
// FILE FORMAT"): each host gets its names on a line with its ssh-ed25519 key, and every other
// line stays as it was: comments, markers (@cert-authority, @revoked), other hosts, other key
// types, hashed names (|1|salt|hash) of other hosts. A key that differs from the one the file
// already trusts for a host is never taken without `replaceChanged`; the refusal names the host,
// the line and both fingerprints. Pure: text in, text out.
import { createHash, createHmac } from "node:crypto";
import { OperationError } from "../errors.js";

export interface HostKeyEntry {
  /** The host's fleet name. */
  readonly host: string;
  /** The names ssh looks the host up by (its addresses), in order; port 22. */
  readonly names: readonly string[];
  /** `ssh-ed25519 BASE64`. */
  readonly key: string;
  /** Where the key came from, for messages: "Terraform's output", "the store (…)". */
  readonly source: string;
}

export type KnownHostsChange = "added" | "unchanged" | "updated" | "replaced";

export interface KnownHostsResult {
  readonly host: string;
  readonly names: readonly string[];
  readonly key: string;
  /** `SHA256:…`, as `ssh-keygen -l` prints it. */
  readonly fingerprint: string;
  readonly source: string;
  /**
   * added: the file named none of its names; unchanged: it trusted this key for all of them;
   * updated: same key, names added or moved; replaced: another key, replaced as asked.
   */
  readonly change: KnownHostsChange;
}

export interface KnownHostsMerge {
  readonly text: string;
  readonly changed: boolean;
  readonly hosts: readonly KnownHostsResult[];
}

/** A key the file (or the base fleet) trusts for a host, which differs from the new one. */
export interface HostKeyConflict {
  readonly host: string;
  /** Where the old key is: "known_hosts line 3 (3.250.17.21)", "the base fleet's hostKey". */
  readonly where: string;
  readonly oldFingerprint: string;
  readonly newFingerprint: string;
  readonly source: string;
}

/** Conflicts a refusal names one by one (a fleet-wide `-replace` would make thousands). */
const CONFLICTS_SHOWN = 20;

/** Keys changed for hosts the deployer trusts already: nothing is written. */
export class HostKeyChangedError extends OperationError {
  readonly conflicts: readonly HostKeyConflict[];

  /** `fix`: what to run once the new key is checked (default: run again with `flag`). */
  constructor(conflicts: readonly HostKeyConflict[], flag: string, fix = `run again with ${flag}`) {
    const hosts = new Set(conflicts.map((c) => c.host)).size;
    const shown = conflicts
      .slice(0, CONFLICTS_SHOWN)
      .map(
        (c) =>
          `${c.host}: its SSH host key changed: ${c.where} trusts ${c.oldFingerprint}, ${c.source} gives ${c.newFingerprint}`,
      );
    const rest = conflicts.length - shown.length;
    super(
      "host-key-changed",
      [
        ...shown,
        ...(rest > 0
          ? [`… and ${rest} more (${hosts} hosts in all whose SSH host key changed)`]
          : []),
      ].join("\n"),
      {
        hint: `nothing was written. If ${conflicts.length === 1 ? "this host was" : "these hosts were"} replaced, or the key regenerated, on purpose (terraform apply -replace, a new instance), check that with whoever did it, then ${fix}; otherwise trust neither key: something may stand in for the host`,
      },
    );
    this.conflicts = conflicts;
  }
}

/** `SHA256:…` of a `TYPE BASE64` key, as ssh-keygen -l prints it. */
export function keyFingerprint(key: string): string {
  const blob = Buffer.from(key.trim().split(/\s+/)[1] ?? "", "base64");
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The comment nixship writes after a host's key, to know the line as that host's later. */
export const knownHostsMarker = (host: string) => `nixship:${host}`;

interface KeyLine {
  readonly kind: "key";
  /** Host patterns, as written. */
  patterns: string[];
  readonly keyType: string;
  readonly keyBase64: string;
  readonly comment: string;
  readonly number: number;
  /** The line as read; undefined once it must be written anew. */
  raw: string | undefined;
}
type Line = { readonly kind: "other"; readonly raw: string } | KeyLine;

/**
 * The file with each entry's key for its names. `existing` undefined: no file yet. Conflicts
 * (another ssh-ed25519 key for one of a host's names, or on a line nixship wrote for it) are
 * returned instead, unless `replaceChanged`.
 */
export function mergeKnownHosts(
  existing: string | undefined,
  entries: readonly HostKeyEntry[],
  options: { readonly replaceChanged: boolean; readonly file: string },
): { readonly merge: KnownHostsMerge } | { readonly conflicts: readonly HostKeyConflict[] } {
  const lines = parseKnownHosts(existing ?? "");
  const index = new KeyLineIndex(lines);
  const conflicts: HostKeyConflict[] = [];
  const results: KnownHostsResult[] = [];
  for (const entry of entries) {
    const [, base64 = ""] = entry.key.split(" ");
    const fingerprint = keyFingerprint(entry.key);
    const names = new Set(entry.names);
    const marker = knownHostsMarker(entry.host);
    // The host's lines, in the file's order: those naming one of its names, and those nixship
    // wrote for it.
    const found = index.find(names, marker);
    const position = new Map([...found].map((l) => [l, lines.indexOf(l)]));
    const own = [...found].sort((a, b) => (position.get(a) ?? 0) - (position.get(b) ?? 0));
    const ed25519 = own.filter((l) => l.keyType === "ssh-ed25519");
    const other = ed25519.filter((l) => l.keyBase64 !== base64);
    if (other.length > 0 && !options.replaceChanged) {
      for (const l of other) {
        const named = l.patterns
          .map((p) => patternNames(p, names))
          .filter((n): n is string => n !== undefined);
        const what = named.length > 0 ? named.join(", ") : l.comment;
        conflicts.push({
          host: entry.host,
          // A line of this merge (number 0): another host of the same output has that name.
          where:
            l.number === 0
              ? `the line for ${l.comment.replace(/^nixship:/, "")} (${what})`
              : `${options.file} line ${l.number} (${what})`,
          oldFingerprint: keyFingerprint(`${l.keyType} ${l.keyBase64}`),
          newFingerprint: fingerprint,
          source: entry.source,
        });
      }
      continue;
    }
    const covered = new Set(
      ed25519
        .filter((l) => l.keyBase64 === base64)
        .flatMap((l) => l.patterns.map((p) => patternNames(p, names))),
    );
    // A line nixship wrote for this host that names none of its names now: an old address.
    const stale = ed25519.some(
      (l) => l.comment === marker && l.patterns.every((p) => patternNames(p, names) === undefined),
    );
    const result = { host: entry.host, names: entry.names, key: entry.key, fingerprint };
    if (other.length === 0 && !stale && entry.names.every((n) => covered.has(n))) {
      results.push({ ...result, source: entry.source, change: "unchanged" });
      continue;
    }
    // Its names leave every ssh-ed25519 line (a line left with no name goes), nixship's old
    // lines for it go, and one line says it all, by its first line (else at the end).
    let at: number | undefined;
    const emptied: KeyLine[] = [];
    for (const l of ed25519) {
      const kept =
        l.comment === marker ? [] : l.patterns.filter((p) => patternNames(p, names) === undefined);
      // After the first such line, or in its place when it goes.
      at ??= (position.get(l) ?? 0) + (kept.length > 0 ? 1 : 0);
      if (kept.length === l.patterns.length) continue;
      index.remove(l);
      l.patterns = kept;
      l.raw = undefined;
      if (kept.length > 0) index.add(l);
      else emptied.push(l);
    }
    const line: KeyLine = {
      kind: "key",
      patterns: [...entry.names],
      keyType: "ssh-ed25519",
      keyBase64: base64,
      comment: marker,
      number: 0,
      raw: undefined,
    };
    lines.splice(at ?? lines.length, 0, line);
    index.add(line);
    const change = other.length > 0 ? "replaced" : own.length === 0 ? "added" : "updated";
    results.push({ ...result, source: entry.source, change });
    // A line left with no name goes.
    for (const l of emptied) lines.splice(lines.indexOf(l), 1);
  }
  if (conflicts.length > 0) return { conflicts };
  const text = lines.map((l) => `${l.raw ?? formatKeyLine(l as KeyLine)}\n`).join("");
  const before = existing ?? "";
  // An untouched file keeps its bytes (a last line without its newline included).
  const changed = results.some((r) => r.change !== "unchanged");
  return { merge: { text: changed ? text : before, changed, hosts: results } };
}

function formatKeyLine(l: KeyLine): string {
  const comment = l.comment === "" ? "" : ` ${l.comment}`;
  return `${l.patterns.join(",")} ${l.keyType} ${l.keyBase64}${comment}`;
}

/** The lines of a known_hosts file; what is not a plain key line is kept as it is. */
function parseKnownHosts(text: string): Line[] {
  const raw = text.split("\n");
  if (raw.at(-1) === "") raw.pop();
  return raw.map((line, i): Line => {
    const trimmed = line.trim();
    // Comments, blank lines and marked lines (@cert-authority, @revoked) are never a host's.
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith("@")) {
      return { kind: "other", raw: line };
    }
    const [patterns = "", keyType = "", keyBase64 = "", ...comment] = trimmed.split(/\s+/);
    if (keyBase64 === "") return { kind: "other", raw: line };
    return {
      kind: "key",
      patterns: patterns.split(","),
      keyType,
      keyBase64,
      comment: comment.join(" "),
      number: i + 1,
      raw: line,
    };
  });
}

/**
 * The key lines of a file, found by the names they carry and their comment, so that a merge of
 * thousands of hosts does not read every line for each. Hashed names are matched line by line
 * (each has a salt of its own), as ssh itself does.
 */
class KeyLineIndex {
  readonly #byName = new Map<string, Set<KeyLine>>();
  readonly #byComment = new Map<string, Set<KeyLine>>();
  readonly #hashed = new Set<KeyLine>();

  constructor(lines: readonly Line[]) {
    for (const l of lines) if (l.kind === "key") this.add(l);
  }

  add(l: KeyLine): void {
    for (const p of l.patterns) {
      if (HASHED_NAME.test(p)) this.#hashed.add(l);
      else setOf(this.#byName, p).add(l);
    }
    setOf(this.#byComment, l.comment).add(l);
  }

  /** Before its patterns change (add it again after). */
  remove(l: KeyLine): void {
    for (const p of l.patterns) this.#byName.get(p)?.delete(l);
    this.#hashed.delete(l);
    this.#byComment.get(l.comment)?.delete(l);
  }

  /** The lines that name one of `names` or carry `comment`. */
  find(names: ReadonlySet<string>, comment: string): Set<KeyLine> {
    const found = new Set<KeyLine>(this.#byComment.get(comment));
    for (const name of names) for (const l of this.#byName.get(name) ?? []) found.add(l);
    for (const l of this.#hashed) {
      if (l.patterns.some((p) => patternNames(p, names) !== undefined)) found.add(l);
    }
    return found;
  }
}

function setOf<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let set = map.get(key);
  if (set === undefined) {
    set = new Set();
    map.set(key, set);
  }
  return set;
}

/** A name as HashKnownHosts writes it: `|1|SALT|HMAC-SHA1(SALT, name)`. */
const HASHED_NAME = /^\|1\|([A-Za-z0-9+/=]+)\|([A-Za-z0-9+/=]+)$/;

/**
 * The name of `names` that a host pattern stands for: the name itself, or a hashed one
 * (`|1|SALT|HMAC-SHA1(SALT, name)`, as HashKnownHosts writes it). Wildcards and negations are
 * never a host's own line, so they match nothing here.
 */
function patternNames(pattern: string, names: ReadonlySet<string>): string | undefined {
  if (names.has(pattern)) return pattern;
  const hashed = HASHED_NAME.exec(pattern);
  if (hashed === null) return undefined;
  const salt = Buffer.from(hashed[1] as string, "base64");
  for (const name of names) {
    const mac = createHmac("sha1", salt).update(name).digest("base64");
    if (mac === hashed[2]) return name;
  }
  return undefined;
}
