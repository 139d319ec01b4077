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

/**
 * Every file of the deployer's Nix store that holds any of `texts`, plaintexts made at run time
 * (freshPlaintext) after `since`: a store path is never written again once made, so only the
 * paths made (or whose inode changed) since can hold one. One pass over those paths for all the
 * texts, where a scan of the whole store (gigabytes on a used machine) outlasts a test's time.
 */
export async function storeFilesHolding(texts: readonly string[], since: Date): Promise<string[]> {
  const listed = await run("find", [
    "/nix/store",
    "-mindepth",
    "1",
    "-maxdepth",
    "1",
    "-newerct",
    `@${Math.floor(since.getTime() / 1000) - 2}`,
  ]);
  if (listed.code !== 0 && !/No such file or directory/.test(listed.stderr)) {
    throw new Error(`find in /nix/store failed: ${listed.stderr}`);
  }
  const paths = listed.stdout.split("\n").filter((p) => p !== "" && !p.endsWith(".lock"));
  const found: string[] = [];
  for (let i = 0; i < paths.length; i += 500) {
    found.push(...(await filesHoldingAny(paths.slice(i, i + 500), texts)));
  }
  return found;
}

/** Files under `dirs` holding any of `texts` (grep, fixed strings); vanished files hold none. */
async function filesHoldingAny(
  dirs: readonly string[],
  texts: readonly string[],
): Promise<string[]> {
  const r = await run("grep", ["-rlF", ...texts.flatMap((t) => ["-e", t]), "--", ...dirs]);
  const errors = r.stderr.split("\n").filter(Boolean);
  const vanished = (line: string) => /^grep: .*: No such file or directory$/.test(line);
  if (r.code > 1 && !(errors.length > 0 && errors.every(vanished))) {
    throw new Error(`grep -r in the Nix store failed: ${r.stderr}`);
  }
  return r.stdout.split("\n").filter(Boolean);
}
