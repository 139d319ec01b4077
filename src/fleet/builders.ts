// Nix's remote builders, as `build.builders` and a machines file write them (`URI SYSTEMS
// SSH_KEY MAX_JOBS SPEED FEATURES MANDATORY PUBLIC_HOST_KEY`, entries separated by `;` or new
// lines, `-` for a default): parsed strictly, and written back in the syntax Nix reads. Pure.

/** One remote builder. Defaults as Nix fills them (`-`, or a line that stops early). */
export interface BuilderMachine {
  /** `ssh://[USER@]HOST` or `ssh-ng://[USER@]HOST`, with Nix's store parameters after `?`. */
  readonly uri: string;
  /** Undefined: the deployer's own system (Nix's default). */
  readonly systems: readonly string[] | undefined;
  /** An absolute path to the ssh identity; undefined: ssh's own choice. */
  readonly sshKey: string | undefined;
  readonly maxJobs: number;
  readonly speedFactor: number;
  readonly supportedFeatures: readonly string[];
  readonly mandatoryFeatures: readonly string[];
  /** The base64 of the builder's host key line (`base64 -w0 ssh_host_ed25519_key.pub`). */
  readonly publicHostKey: string | undefined;
}

const USER = "[A-Za-z0-9_][A-Za-z0-9._-]*";
const HOST = "[A-Za-z0-9_][A-Za-z0-9._-]*";
const URI = `(?:ssh|ssh-ng)://(?:${USER}@)?${HOST}(?:\\?[^\\s;#]*)?`;
const SYSTEM = "[a-z0-9_]+(?:-[a-z0-9_]+){1,3}";
const FEATURE = "[A-Za-z0-9_.+-]+";
const list = (item: string) => `(?:-|${item}(?:,${item})*)`;
const FIELDS = [
  URI,
  list(SYSTEM),
  "(?:-|/[^\\s;#]*)",
  "(?:-|[0-9]+)",
  "(?:-|[0-9]+(?:\\.[0-9]+)?)",
  list(FEATURE),
  list(FEATURE),
  "(?:-|[A-Za-z0-9+/]+={0,2})",
];
const ENTRY = `[ \\t]*${FIELDS.reduceRight((rest, field) => `${field}(?:[ \\t]+${rest})?`)}[ \\t]*`;

/**
 * The shape of `build.builders` (nixship.schema.json holds the same pattern): `@FILE`, or
 * entries separated by `;` or new lines. The parser checks more (a host key that decodes, jobs
 * of at least 1); the pattern is what an editor can check.
 */
export const BUILDERS_PATTERN = new RegExp(
  `^(?:@[^\\s;#][^\\n;#]*|(?:${ENTRY})?(?:[;\\n](?:${ENTRY})?)*)$`,
);

const URI_RE = new RegExp(`^${URI}$`);
const SYSTEM_RE = new RegExp(`^${SYSTEM}$`);
const FEATURE_RE = new RegExp(`^${FEATURE}$`);
const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;
const HOST_KEY_LINE =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [^\n]*)?\n?$/;

const FIELD_NAMES = [
  "URI",
  "SYSTEMS",
  "SSH_KEY",
  "MAX_JOBS",
  "SPEED",
  "FEATURES",
  "MANDATORY",
  "PUBLIC_HOST_KEY",
] as const;

export type BuildersSpec =
  | { readonly kind: "machines"; readonly machines: readonly BuilderMachine[] }
  /** `@FILE`: a machines file, read when a build starts (absolute once the fleet is loaded). */
  | { readonly kind: "file"; readonly path: string };

export interface BuildersParse {
  readonly machines: BuilderMachine[];
  /** Each problem names its entry (from 1) and the field. */
  readonly problems: string[];
}

/**
 * Parses entries in Nix's builders syntax. `comments`: a `#` starts a comment (as in a machines
 * file); otherwise it is refused. An `@FILE` inside is refused: only the whole value may be one.
 */
export function parseBuilderEntries(text: string, options: { comments: boolean }): BuildersParse {
  const machines: BuilderMachine[] = [];
  const problems: string[] = [];
  const entries = text.split(/[;\n]/);
  let n = 0;
  for (const raw of entries) {
    const hash = raw.indexOf("#");
    if (hash >= 0 && !options.comments) {
      problems.push(`entry ${n + 1}: a "#" (comments belong in a machines file, "@FILE")`);
    }
    const line = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (line === "") continue;
    n++;
    const where = `entry ${n} (${JSON.stringify(clip(line))})`;
    if (line.startsWith("@")) {
      problems.push(`${where}: a machines file must be the whole value, "@/path/to/machines"`);
      continue;
    }
    const parsed = parseBuilderLine(line);
    if (typeof parsed === "string") problems.push(`${where}: ${parsed}`);
    else machines.push(parsed);
  }
  if (n === 0 && problems.length === 0) problems.push("names no builder");
  return { machines, problems };
}

/** One entry, or what is wrong with it. */
export function parseBuilderLine(line: string): BuilderMachine | string {
  const fields = line.trim().split(/[ \t]+/);
  if (fields.length > FIELD_NAMES.length) {
    return `has ${fields.length} fields; Nix's builders syntax has at most ${FIELD_NAMES.length}: ${FIELD_NAMES.join(" ")}`;
  }
  const at = (i: number) => {
    const value = fields[i];
    return value === undefined || value === "-" ? undefined : value;
  };
  const bad = (i: number, want: string) =>
    `${FIELD_NAMES[i]} must be ${want} (got ${JSON.stringify(clip(fields[i] ?? ""))})`;
  const uri = fields[0] ?? "";
  if (!URI_RE.test(uri)) {
    return bad(
      0,
      "ssh://[USER@]HOST or ssh-ng://[USER@]HOST (a host name, address or ssh_config alias)",
    );
  }
  const systems = at(1)?.split(",");
  if (systems?.some((s) => !SYSTEM_RE.test(s))) {
    return bad(1, "systems separated by commas, such as x86_64-linux,aarch64-linux");
  }
  const sshKey = at(2);
  if (sshKey !== undefined && !sshKey.startsWith("/")) return bad(2, "an absolute path, or -");
  const maxJobs = at(3) === undefined ? 1 : Number(at(3));
  if (!Number.isSafeInteger(maxJobs) || maxJobs < 1) return bad(3, "a whole number >= 1, or -");
  const speedFactor = at(4) === undefined ? 1 : Number(at(4));
  if (!/^[0-9]+(\.[0-9]+)?$/.test(at(4) ?? "1") || !(speedFactor > 0)) {
    return bad(4, "a number > 0, or -");
  }
  const features = (i: number) => at(i)?.split(",") ?? [];
  for (const i of [5, 6]) {
    if (features(i).some((f) => !FEATURE_RE.test(f))) {
      return bad(i, "features separated by commas, such as kvm,big-parallel, or -");
    }
  }
  const publicHostKey = at(7);
  if (publicHostKey !== undefined && decodeHostKey(publicHostKey) === undefined) {
    return bad(
      7,
      "the base64 of the builder's host key line (base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub), or -",
    );
  }
  return {
    uri,
    systems,
    sshKey,
    maxJobs,
    speedFactor,
    supportedFeatures: features(5),
    mandatoryFeatures: features(6),
    publicHostKey,
  };
}

/** The host key line (`ssh-ed25519 AAAA…`) a PUBLIC_HOST_KEY field holds, or undefined. */
export function decodeHostKey(base64: string): string | undefined {
  if (!BASE64_RE.test(base64) || base64.length % 4 !== 0) return undefined;
  const text = Buffer.from(base64, "base64").toString("utf8");
  if (Buffer.from(text, "utf8").toString("base64") !== base64) return undefined;
  return HOST_KEY_LINE.test(text) ? text.trim() : undefined;
}

/** The entries as Nix's `--builders` takes them: one entry per `;`, every field written. */
export function formatBuilders(machines: readonly BuilderMachine[]): string {
  const dash = (items: readonly string[] | undefined) =>
    items === undefined || items.length === 0 ? "-" : items.join(",");
  return machines
    .map((m) =>
      [
        m.uri,
        dash(m.systems),
        m.sshKey ?? "-",
        String(m.maxJobs),
        String(m.speedFactor),
        dash(m.supportedFeatures),
        dash(m.mandatoryFeatures),
        m.publicHostKey ?? "-",
      ].join(" "),
    )
    .join(" ; ");
}

/** The user and host a builder's URI names (`ssh-ng://root@b1?x=y` → root, b1). */
export function builderAddress(uri: string): { user: string | undefined; host: string } {
  const rest = uri.replace(/^[a-z-]+:\/\//, "").replace(/\?.*$/, "");
  const at = rest.lastIndexOf("@");
  return at < 0
    ? { user: undefined, host: rest }
    : { user: rest.slice(0, at), host: rest.slice(at + 1) };
}

/** Whether a builder takes derivations for `system` (Nix's own rule: its list, else the deployer's). */
export function servesSystem(m: BuilderMachine, system: string, localSystem: string): boolean {
  return (m.systems ?? [localSystem]).includes(system);
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}
