// The published SSH host keys a fleet's secrets are encrypted to, pinned on first use. ssm and
// agent hosts that the fleet file gives no `hostKey` publish theirs to the store
// (status/host-keys/HOST.pub), which any process on such a host can rewrite with the host's
// role. So the secrets commands write each published key they encrypt to into a file beside
// the fleet file (PINS_FILE, committed with the secrets), and from then on a published key
// that differs from its pin is refused, by those commands (unless --replace-host-keys) and by
// deploys, which keep encrypting nothing to it.
import { join } from "node:path";
import { canonicalHostKey } from "../age/host-key.js";
import { InputError } from "../errors.js";
import { type HostKeyConflict, keyFingerprint } from "../fleet/known-hosts.js";
import { hostKeyObjectKey } from "../status/host-key-store.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { readFileBounded } from "../util/bounded-file.js";

/** The pin file's name, in the fleet file's directory. */
export const PINS_FILE = "nixship-host-keys";

/** A pin file larger than this is not one (a line is about 100 bytes). */
const PINS_LIMIT = 4 * 1024 * 1024;

/** Host name → its pinned `ssh-ed25519 BASE64`. */
export type HostKeyPins = ReadonlyMap<string, string>;

const HEADER = `# The published SSH host keys this fleet's secrets are encrypted to, pinned by nixship on
# first use (docs/secrets.md, "Host keys"). Commit it with the secrets. A host whose published
# key differs from its line here is refused until its key is checked out of band and
# 'nixship secrets rekey --replace-host-keys' takes the new one.
`;

export const pinsPath = (fleetDir: string) => join(fleetDir, PINS_FILE);

/** The pins beside the fleet file; none when there is no such file. */
export async function readPins(fleetDir: string): Promise<HostKeyPins> {
  const file = pinsPath(fleetDir);
  const bytes = await readFileBounded(file, PINS_LIMIT, (size) => tooLarge(file, size));
  if (bytes === undefined) return new Map();
  return parsePins(bytes.toString("utf8"), file);
}

function tooLarge(file: string, size: number): InputError {
  return new InputError(
    "bad-host-key-pins",
    `${file}: ${size} bytes is no pin file (at most ${PINS_LIMIT})`,
    { hint: "it holds one line per host: HOST ssh-ed25519 BASE64" },
  );
}

/** `HOST ssh-ed25519 BASE64` lines; `#` comments and blank lines are passed over. */
export function parsePins(text: string, file: string): HostKeyPins {
  const pins = new Map<string, string>();
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `${file} line ${i + 1}`;
    const [host, ...key] = line.split(/\s+/);
    if (host === undefined || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(host) || key.length < 2) {
      throw new InputError("bad-host-key-pins", `${where}: not "HOST ssh-ed25519 BASE64"`, {
        hint: `fix or remove the line; ${PINS_FILE} pins the published host keys the secrets are encrypted to`,
      });
    }
    if (pins.has(host)) {
      throw new InputError("bad-host-key-pins", `${where}: a second pin for ${host}`, {
        hint: "keep the line of the key its secrets are encrypted to",
      });
    }
    pins.set(host, canonicalHostKey(key.slice(0, 2).join(" "), where));
  }
  return pins;
}

export function formatPins(pins: HostKeyPins): string {
  return `${HEADER}${pinLines(pins)}`;
}

/** `HOST KEY` lines, sorted by host. */
function pinLines(pins: HostKeyPins): string {
  return [...pins]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([h, k]) => `${h} ${k}\n`)
    .join("");
}

/**
 * The pin file's text (`text`, a file parsePins read; undefined: none yet) with `changes` laid
 * in: a host's line replaced where it has one (what followed its key went with the key it
 * described), new hosts appended, sorted; every other line (comments, notes after a key)
 * stays as it was.
 */
export function mergePins(text: string | undefined, changes: HostKeyPins): string {
  if (text === undefined || text.trim() === "") return formatPins(changes);
  const added = new Map(changes);
  const lines = (text.endsWith("\n") ? text.slice(0, -1) : text).split("\n");
  const kept = lines.map((raw) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return raw;
    const host = line.split(/\s+/)[0] as string;
    const key = added.get(host);
    if (key === undefined) return raw;
    added.delete(host);
    return `${host} ${key}`;
  });
  return `${kept.map((l) => `${l}\n`).join("")}${pinLines(added)}`;
}

/**
 * Lays `changes` into the pins beside the fleet file (mergePins), whole or not at all; the file
 * is read again first, so that lines written meanwhile are kept too.
 */
export async function writePins(fleetDir: string, changes: HostKeyPins): Promise<void> {
  const file = pinsPath(fleetDir);
  const bytes = await readFileBounded(file, PINS_LIMIT, (size) => tooLarge(file, size));
  const text = bytes?.toString("utf8");
  if (text !== undefined) parsePins(text, file);
  await writeFileAtomically(file, mergePins(text, changes));
}

/** The published keys judged against the pins. */
export interface PinnedKeys {
  /** The key to use for each host: its pin where it has one, else what it published. */
  readonly keys: ReadonlyMap<string, string>;
  /** Hosts whose published key differs from their pin. */
  readonly conflicts: readonly HostKeyConflict[];
  /** Published keys no pin names yet: pinned once something is encrypted to them. */
  readonly unpinned: ReadonlyMap<string, string>;
  /** The published keys of the hosts in `conflicts`. */
  readonly changed: ReadonlyMap<string, string>;
}

/**
 * `published`: each host whose key comes from the store, and the key it published (undefined:
 * none yet). Pure.
 */
export function judgePublished(
  published: ReadonlyMap<string, string | undefined>,
  pins: HostKeyPins,
  file: string,
): PinnedKeys {
  const keys = new Map<string, string>();
  const conflicts: HostKeyConflict[] = [];
  const unpinned = new Map<string, string>();
  const changed = new Map<string, string>();
  for (const [host, key] of published) {
    const pinned = pins.get(host);
    if (pinned === undefined) {
      if (key === undefined) continue;
      keys.set(host, key);
      unpinned.set(host, key);
      continue;
    }
    // A pinned host that published nothing (yet, or no more) keeps its pin.
    keys.set(host, pinned);
    if (key !== undefined && pinned !== key) {
      changed.set(host, key);
      conflicts.push({
        host,
        where: file,
        oldFingerprint: keyFingerprint(pinned),
        newFingerprint: keyFingerprint(key),
        source: `the store (${hostKeyObjectKey(host)})`,
      });
    }
  }
  return { keys, conflicts, unpinned, changed };
}
