// What the secrets tests look at on lab hosts and on disk: a secret as a host keeps it, what
// the example service read, and every file that holds a plaintext.
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { run } from "../../support/cli.js";

/** `owner:group mode content` of a file on a lab host, or "(none)". */
export async function keptOn(labDir: string, host: string, path: string): Promise<string> {
  const r = await run("ssh", [
    "-F",
    join(labDir, "ssh_config"),
    host,
    `[ -e ${path} ] && stat -c '%U:%G %a' ${path} && cat ${path} || echo '(none)'`,
  ]);
  return r.stdout.trim().replace("\n", " ");
}

/** The SHA-256 of the token the example service read as it started (null: it had none). */
export async function servedSecret(address: string): Promise<string | null> {
  const r = await run("curl", ["-s", "--max-time", "5", `http://${address}/secret`]);
  return (JSON.parse(r.stdout) as { sha256: string | null }).sha256;
}

/**
 * A plaintext for a test secret, made at run time: it is in no file (a copy of the tests in
 * the Nix store, say), so a scan that finds it has found a leak.
 */
export function freshPlaintext(label: string): string {
  return `${label}-${randomBytes(12).toString("hex")}`;
}

export const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/**
 * Every file under `dir` whose bytes contain `text` (grep, fixed string). A file that went
 * between grep's listing and its reading (a build's lock in a shared /nix/store, say) holds
 * nothing now; any other error fails the scan.
 */
export async function filesHolding(dir: string, text: string): Promise<string[]> {
  const r = await run("grep", ["-rlF", "--", text, dir]);
  const errors = r.stderr.split("\n").filter(Boolean);
  const vanished = (line: string) => /^grep: .*: No such file or directory$/.test(line);
  if (r.code > 1 && !(errors.length > 0 && errors.every(vanished))) {
    throw new Error(`grep -r in ${dir} failed: ${r.stderr}`);
  }
  return r.stdout.split("\n").filter(Boolean);
}
