// The secrets bundle: a host's secrets (age files) as activate.sh --secrets reads them, and the
// digest of their manifest, which activate.sh's status reports for the secrets it installed.
import { createHash } from "node:crypto";
import { InputError } from "../errors.js";

export interface BundledSecret {
  readonly name: string;
  readonly owner: string;
  readonly group: string;
  /** Four octal digits, e.g. "0400". */
  readonly mode: string;
  /** Where the host keeps the plaintext: under /run (a tmpfs). */
  readonly path: string;
  /** The binary age file. */
  readonly ciphertext: Uint8Array;
}

/** The largest bundle the host accepts (refuse above it on both sides): 8 MiB. */
export const MAX_SECRETS_BUNDLE = 8 * 1024 * 1024;

const HEADER = "nixship-secrets 1\n";

// The rules activate.sh checks each line against (fleet/read-secrets.ts enforces them first).
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const ACCOUNT = /^(?:[a-z_][a-z0-9_-]*\$?|[0-9]+)$/;
const MODE = /^[0-7]{4}$/;
/** No segment starts with "-": a command on the host would read it as an option. */
const PATH_SEGMENT = /^[A-Za-z0-9_@+][A-Za-z0-9._@+-]*$/;

/** Why a secret's fields cannot go in a bundle, or undefined. */
function fieldProblem(s: BundledSecret): string | undefined {
  if (!NAME.test(s.name) || s.name.length > 64 || s.name.includes("..")) return "NAME";
  if (!ACCOUNT.test(s.owner) || s.owner.length > 32) return "OWNER";
  if (!ACCOUNT.test(s.group) || s.group.length > 32) return "GROUP";
  if (!MODE.test(s.mode)) return "MODE";
  const segments = s.path.split("/");
  if (segments.some((segment) => segment.startsWith("-"))) {
    return "PATH (a segment starts with '-', which a command on the host would read as an option)";
  }
  if (
    s.path.length > 255 ||
    segments[0] !== "" ||
    segments[1] !== "run" ||
    segments.length < 3 ||
    !segments.slice(1).every((segment) => PATH_SEGMENT.test(segment))
  ) {
    return "PATH";
  }
  if (s.ciphertext.length === 0) return "the ciphertext (empty)";
  return undefined;
}

/** The secrets in bundle order (by name), checked: a field that breaks the rules is a bug. */
function ordered(secrets: readonly BundledSecret[]): BundledSecret[] {
  const names = new Set<string>();
  const paths = new Set<string>();
  for (const s of secrets) {
    const problem = fieldProblem(s);
    if (problem !== undefined) {
      throw new Error(`secret ${JSON.stringify(s.name)}: ${problem} breaks the bundle's rules`);
    }
    if (names.has(s.name) || paths.has(s.path)) {
      throw new Error(`secret ${s.name}: its name or path is another secret's too`);
    }
    names.add(s.name);
    paths.add(s.path);
  }
  return [...secrets].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const sha256Hex = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");

/** The manifest line of a secret: its fields without BASE64. */
const manifestLine = (s: BundledSecret) =>
  `${s.name} ${s.owner} ${s.group} ${s.mode} ${s.path} ${sha256Hex(s.ciphertext)}`;

/**
 * The bundle text; entries sorted by name; throws Error (a bug) on a field that breaks the rules
 * (the fleet parser already enforces them), and an InputError when it would exceed
 * MAX_SECRETS_BUNDLE.
 */
export function secretsBundle(secrets: readonly BundledSecret[]): string {
  const lines = ordered(secrets).map(
    (s) => `${manifestLine(s)} ${Buffer.from(s.ciphertext).toString("base64")}\n`,
  );
  const text = HEADER + lines.join("");
  if (text.length > MAX_SECRETS_BUNDLE) {
    throw new InputError(
      "secrets-bundle-too-large",
      `the secrets of one host make a bundle of ${text.length} bytes, more than hosts accept (${MAX_SECRETS_BUNDLE})`,
      { hint: "keep large files out of secrets: a secret should be a key or a password" },
    );
  }
  return text;
}

/** The manifest digest of those secrets, as activate.sh's status reports it for the installed ones. */
export function secretsManifestDigest(secrets: readonly BundledSecret[]): string {
  return sha256Hex(
    ordered(secrets)
      .map((s) => `${manifestLine(s)}\n`)
      .join(""),
  );
}
