// An unencrypted ed25519 key pair, as sshd's host keys are, made by the real ssh-keygen: the
// lab's client key and its hosts' keys (and tests' host keys).
import { runCommand } from "../util/run.js";

/** Writes the private key to `file` and the public one to `file.pub`, with `comment`. */
export async function makeEd25519Key(file: string, comment: string, purpose: string) {
  await runCommand("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file], {
    purpose,
  });
}
