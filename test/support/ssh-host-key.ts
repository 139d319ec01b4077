// An SSH host key pair for a test, made by the real ssh-keygen: an unencrypted ed25519 key, as
// sshd's host keys are.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

/** The private key file `dir/name` (and `.pub` beside it), and the public key as the fleet writes it. */
export async function makeHostKey(
  dir: string,
  name: string,
): Promise<{ file: string; publicKey: string }> {
  const file = join(dir, name);
  await promisify(execFile)("ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    name,
    "-f",
    file,
  ]);
  const line = await readFile(`${file}.pub`, "utf8");
  return { file, publicKey: line.split(" ").slice(0, 2).join(" ") };
}
