// The `secrets` section of the fleet file: the admins who can edit secrets, the age tool the
// hosts decrypt with, and each secret's hosts, ciphertext file, owner, group, mode and path.

import { posix } from "node:path";
import { parseRecipient } from "../age/age.js";
import { isStorePath } from "../nix/store-path.js";
import {
  ADMIN_PLACEHOLDER,
  defaultSecretFile,
  defaultSecretPath,
  type FleetHost,
  SECRET_DEFAULTS,
  SECRET_NAME_MAX_LENGTH,
  SECRET_NAME_PATTERN,
  type SecretSpec,
  type SecretsSettings,
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
import { selectHosts } from "./select.js";

/** A user or group on the host: a POSIX name or a numeric id. */
const ACCOUNT_RULE = { pattern: /^(?:[a-z_][a-z0-9_-]*\$?|[0-9]+)$/, maxLength: 32 };
const MODE_RULE = { pattern: /^0?[0-7]{3}$/, maxLength: 4 };
/**
 * Files beside the fleet file that a secret's `file` must not name: the fleet file's default
 * name and the host-key pins (secrets/host-key-pins.ts PINS_FILE); `secrets set` would
 * overwrite them with ciphertext. cli/secrets.ts also refuses the fleet file as named.
 */
export const NOT_SECRET_FILES: Readonly<Record<string, string>> = {
  "nixship.json": "the fleet file's name",
  "nixship-host-keys": "the host-key pins file",
};

/**
 * Path segments a shell on the host reads without quoting surprises. None starts with "-": a
 * command on the host given such a path (`/run/keys/--version`) would read it as an option.
 */
const PATH_SEGMENT = /^[A-Za-z0-9_@+][A-Za-z0-9._@+-]*$/;

export function readSecrets(
  value: unknown,
  hosts: readonly FleetHost[] | undefined,
  problems: Problems,
): SecretsSettings | undefined {
  const path = ["secrets"];
  const doc = readObject(value, path, problems, FLEET_KEYS.secrets);
  if (doc === undefined) return undefined;
  const admins = readRecipients(doc.admins, [...path, "admins"], problems);
  let age: SecretsSettings["age"];
  if (doc.age !== undefined) {
    const text = readString(doc.age, [...path, "age"], problems);
    if (text !== undefined && !isStorePath(text)) {
      problems.add([...path, "age"], `must be a store path holding bin/age (${got(text)})`);
    } else age = text as SecretsSettings["age"];
  }
  const entries = readEntries(doc.entries, hosts, [...path, "entries"], problems);
  if (admins === undefined || entries === undefined) return undefined;
  return { admins, age, entries };
}

/** Recipients of every secret: at least one, so that someone can always edit a secret. */
function readRecipients(value: unknown, path: JsonPath, problems: Problems): string[] | undefined {
  const items = readArray(value, path, problems, 1);
  if (items === undefined) return undefined;
  return items.map((item, i) => {
    const text = readString(item, [...path, i], problems);
    if (text === undefined) return "";
    if (text === ADMIN_PLACEHOLDER) {
      problems.add(
        [...path, i],
        "is the placeholder 'nixship init --from' wrote: put an admin's age recipient there (age1…, from 'age-keygen -y KEY'), or an ssh-ed25519 public key",
      );
      return text;
    }
    const problem = inputProblem(() => parseRecipient(text, `admin ${i}`));
    if (problem !== undefined) problems.add([...path, i], problem);
    return text;
  });
}

function readEntries(
  value: unknown,
  hosts: readonly FleetHost[] | undefined,
  path: JsonPath,
  problems: Problems,
): SecretSpec[] | undefined {
  if (!isJsonObject(value)) return problems.add(path, `must be an object (${got(value)})`);
  const entries: SecretSpec[] = [];
  // By path, the secrets kept there and their hosts (undefined: not known). A host keeps one
  // file at a path; hosts that share none may each keep their own there (colmena's keys).
  const paths = new Map<string, { name: string; on: ReadonlySet<string> | undefined }[]>();
  // By ciphertext file (as written, normalized), the secret whose file it is: one file holds
  // one secret, else setting one would replace the other's value.
  const files = new Map<string, string>();
  for (const [name, entryValue] of Object.entries(value)) {
    const at = [...path, name];
    if (
      !(SECRET_NAME_PATTERN.test(name) && name.length <= SECRET_NAME_MAX_LENGTH) ||
      name.includes("..")
    ) {
      problems.add(
        at,
        `secret names must match ${SECRET_NAME_PATTERN.source} (no "/", no ".."), at most ${SECRET_NAME_MAX_LENGTH} characters`,
      );
      continue;
    }
    const entry = readEntry(name, entryValue, hosts, at, problems);
    if (entry === undefined) continue;
    const file = posix.normalize(entry.file);
    const owner = files.get(file);
    if (owner !== undefined) {
      problems.add(
        [...at, "file"],
        `is also the file of secret "${owner}" (${entry.file}): each secret needs a file of its own, else setting one replaces the other's value (give "${name}" another file, e.g. ${defaultSecretFile(name)})`,
      );
      continue;
    }
    files.set(file, name);
    const on = hostsOf(entry.hosts, hosts);
    const there = paths.get(entry.path) ?? [];
    for (const other of there) {
      const shared =
        on === undefined || other.on === undefined
          ? undefined
          : [...on].find((h) => other.on?.has(h));
      if (on !== undefined && other.on !== undefined && shared === undefined) continue;
      problems.add(
        [...at, "path"],
        `is also the path of secret "${other.name}" (${entry.path})${shared === undefined ? "" : `, on ${shared}: a host keeps one file at a path`}`,
      );
      break;
    }
    paths.set(entry.path, [...there, { name, on }]);
    entries.push(entry);
  }
  return entries;
}

/** The names of the hosts `selector` picks; undefined when they cannot be told. */
function hostsOf(
  selector: string,
  hosts: readonly FleetHost[] | undefined,
): ReadonlySet<string> | undefined {
  if (hosts === undefined) return undefined;
  try {
    return new Set(selectHosts({ hosts }, selector).map((h) => h.name));
  } catch {
    return undefined;
  }
}

function readEntry(
  name: string,
  value: unknown,
  hosts: readonly FleetHost[] | undefined,
  path: JsonPath,
  problems: Problems,
): SecretSpec | undefined {
  const doc = readObject(value, path, problems, FLEET_KEYS.secret);
  if (doc === undefined) return undefined;
  const at = (key: string) => [...path, key];
  const selector =
    doc.hosts === undefined ? undefined : readString(doc.hosts, at("hosts"), problems);
  if (selector !== undefined && hosts !== undefined) {
    const problem = inputProblem(() => selectHosts({ hosts }, selector));
    if (problem !== undefined) problems.add(at("hosts"), problem);
  }
  const file =
    doc.file === undefined ? defaultSecretFile(name) : readString(doc.file, at("file"), problems);
  const fileProblem = file === undefined ? undefined : secretFileProblem(file, name);
  if (fileProblem !== undefined) problems.add(at("file"), fileProblem);
  const text = (key: "owner" | "group" | "mode", rule: typeof MODE_RULE) =>
    doc[key] === undefined ? SECRET_DEFAULTS[key] : readString(doc[key], at(key), problems, rule);
  const owner = text("owner", ACCOUNT_RULE);
  const group = text("group", ACCOUNT_RULE);
  const mode = text("mode", MODE_RULE);
  const hostPath =
    doc.path === undefined ? defaultSecretPath(name) : readString(doc.path, at("path"), problems);
  const pathProblem = hostPath === undefined ? undefined : secretPathProblem(hostPath);
  if (pathProblem !== undefined) problems.add(at("path"), pathProblem);
  if (
    selector === undefined ||
    file === undefined ||
    fileProblem !== undefined ||
    owner === undefined ||
    group === undefined ||
    mode === undefined ||
    hostPath === undefined ||
    pathProblem !== undefined
  ) {
    return undefined;
  }
  return { name, hosts: selector, file, owner, group, mode: mode.padStart(4, "0"), path: hostPath };
}

/** Why `file` cannot hold a secret's ciphertext: it must name a file that is not the fleet's own. */
function secretFileProblem(file: string, name: string): string | undefined {
  if (file.includes("\0")) return "must not contain a NUL character";
  const normal = posix.normalize(file);
  if (
    file === "" ||
    file.endsWith("/") ||
    [".", "..", "/"].includes(normal) ||
    normal.endsWith("/..")
  ) {
    return `must name a file (got "${file}")`;
  }
  const taken = NOT_SECRET_FILES[normal];
  if (taken !== undefined) {
    return `is ${taken} (${file}), which setting the secret would overwrite with ciphertext: give the secret a file of its own, e.g. ${defaultSecretFile(name)}`;
  }
  return undefined;
}

/** Why a host path cannot hold a secret: it must be a plain absolute path under /run (tmpfs). */
export function secretPathProblem(path: string): string | undefined {
  const segments = path.split("/");
  if (segments[0] !== "" || segments[1] !== "run" || segments.length < 3) {
    return `must be a file under /run, which is a tmpfs, so that the plaintext never reaches a disk (got "${path}")`;
  }
  const dashed = segments.slice(1).find((s) => s.startsWith("-"));
  if (dashed !== undefined) {
    return `must have no segment starting with "-" ("${dashed}"), which a command on the host would read as an option: rename it (got "${path}")`;
  }
  if (path.length > 255 || !segments.slice(1).every((s) => PATH_SEGMENT.test(s))) {
    return `must be a plain absolute path: segments of letters, digits and "._@+-", no "." or "..", at most 255 characters (got "${path}")`;
  }
  return undefined;
}
