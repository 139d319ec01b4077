// activate.sh's secrets step at its edges, run on its parts alone (definitions only) as root on
// this machine, with its real age: a PATH whose last segment starts with "-" (mv would take it for
// an option), a bundle holding a NUL byte (grep would take it for binary and check no line), an
// empty secret (age 1.1.x never creates the output file of an empty plaintext). Needs root: the
// secrets go under /run, their owners given by chown.
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encryptSecret, generateAgeIdentity, parseRecipient } from "../src/age/age.js";
import type { BundledSecret } from "../src/host/secrets-bundle.js";
import { run } from "../support/cli.js";
import { scriptPart } from "./support/script-part.js";

const PARTS = [
  "02-values.sh",
  "05-bounded.sh",
  "20-root-paths.sh",
  "23-secrets-bundle.sh",
  "25-secrets-install.sh",
];

// What the rest of the script provides, cut to what the step needs: failing exits with the code
// and says why; no lock to record in. This machine's /run need not be a tmpfs: stat -f says it is.
const HARNESS = `
log() { printf 'activate: %s\\n' "$*" >&2; }
fail() { printf 'failed (%s): %s\\n' "$2" "$3" >&2; exit "$2"; }
step_failed() { fail "$@"; }
timed_out() { fail "$1" 3 "timed out"; }
remaining_set() { r=60; }
write_info() { :; }
mark_phase() { :; }
proc_start() { :; }
stat() { case $1 in -f) echo tmpfs ;; *) command stat "$@" ;; esac; }
KILL_GRACE=5 MAX_SECRETS_BUNDLE=8388608 SECRETS_TIMEOUT=30
pinned=0 age_path="" action=switch
`;

let work: string;
/** Root's alone, under /run: where the secrets of each run go. */
let runDir: string;
let parts: string[];
let hostKey: string;
let recipient: ReturnType<typeof parseRecipient>;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("needs root: it installs secrets under /run");
  work = await mkdtemp(join(tmpdir(), "nixship-secrets-edges-"));
  runDir = await mkdtemp("/run/nixship-secrets-edges-");
  parts = await Promise.all(PARTS.map((p) => scriptPart(work, p)));
  const { identity, recipient: text } = await generateAgeIdentity();
  hostKey = join(work, "host-key");
  await writeFile(hostKey, `${identity}\n`, { mode: 0o600 });
  recipient = parseRecipient(text, "test recipient");
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(runDir, { recursive: true, force: true });
});

/** A secret's file as nixship wrote them before it bound names: off pinned trust, installed. */
async function sealed(
  fields: Omit<BundledSecret, "ciphertext">,
  plaintext: string,
): Promise<BundledSecret> {
  const ciphertext = await encryptSecret(new TextEncoder().encode(plaintext), [recipient]);
  return { ...fields, ciphertext };
}

/**
 * The bundle of `secrets`, written here rather than by secretsBundle, which refuses some of the
 * lines the host must still stand (a bundle of an older deployer's, or one made by hand).
 */
function secretsBundle(secrets: readonly BundledSecret[]): string {
  const line = (s: BundledSecret) => {
    const sha = createHash("sha256").update(s.ciphertext).digest("hex");
    const b64 = Buffer.from(s.ciphertext).toString("base64");
    return `${s.name} ${s.owner} ${s.group} ${s.mode} ${s.path} ${sha} ${b64}\n`;
  };
  return `nixship-secrets 1\n${secrets.map(line).join("")}`;
}

/** install_secrets over `bundle` (as --secrets-file gives it), with a state directory of its own. */
async function install(bundle: Buffer | string) {
  const dir = await mkdtemp(join(work, "run-"));
  const file = join(dir, "bundle");
  await writeFile(file, bundle);
  const script = `${HARNESS}
for p in ${parts.map((_, i) => `"$${i + 3}"`).join(" ")}; do . "$p"; done
state_dir=$1/state secrets_work=$1/state/secrets-work secrets_file=$1/bundle host_key=$2
install_secrets`;
  return run("sh", ["-c", script, "sh", dir, hostKey, ...parts]);
}

/** The .nixship-*.new files left in `dir`. */
async function temps(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith(".nixship-"));
}

describe("installing secrets (activate.sh)", () => {
  it("installs a secret whose PATH's last segment starts with '-' at that very path", async () => {
    const path = `${runDir}/dash/--version`;
    const r = await install(
      secretsBundle([
        await sealed(
          { name: "dash", owner: "root", group: "root", mode: "0400", path },
          "dash-plaintext",
        ),
      ]),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(path, "utf8")).toBe("dash-plaintext");
    expect((await stat(path)).mode & 0o7777).toBe(0o400);
    expect(await temps(`${runDir}/dash`)).toEqual([]);
  });

  it("refuses a bundle holding a NUL byte, naming it, before making any directory", async () => {
    const before = await readdir(runDir);
    const good = secretsBundle([
      await sealed(
        { name: "nul", owner: "root", group: "root", mode: "0400", path: `${runDir}/nulXdir/k` },
        "nul-plaintext",
      ),
    ]);
    // The NUL in a directory of PATH: the shell's read drops it, and would make that directory.
    const bundle = Buffer.from(good.replace("nulXdir", "nul\0dir"), "latin1");
    expect(bundle.includes(0)).toBe(true);
    const r = await install(bundle);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("secrets bundle: it holds a NUL byte");
    expect(await readdir(runDir)).toEqual(before);
  });

  it("installs an empty secret as an empty file with its owner, group and mode", async () => {
    const path = `${runDir}/empty/key`;
    const r = await install(
      secretsBundle([
        await sealed({ name: "empty", owner: "nobody", group: "nogroup", mode: "0440", path }, ""),
      ]),
    );
    expect(r.code, r.stderr).toBe(0);
    const s = await stat(path);
    expect(s.size).toBe(0);
    expect(s.mode & 0o7777).toBe(0o440);
    const ids = (await run("id", ["-u", "nobody"])).stdout.trim();
    const gid = (await run("getent", ["group", "nogroup"])).stdout.split(":")[2];
    expect([s.uid, s.gid]).toEqual([Number(ids), Number(gid)]);
    expect(await temps(`${runDir}/empty`)).toEqual([]);
  });
});
