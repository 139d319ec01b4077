// An SSH host key pair for a test, made as the lab makes its hosts' keys (src/lab/ssh-keygen.ts).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { makeEd25519Key } from "../../src/lab/ssh-keygen.js";

/** The private key file `dir/name` (and `.pub` beside it), and the public key as the fleet writes it. */
export async function makeHostKey(
  dir: string,
  name: string,
): Promise<{ file: string; publicKey: string }> {
  const file = join(dir, name);
  await makeEd25519Key(file, name, `make a test host key ${name}`);
  const line = await readFile(`${file}.pub`, "utf8");
  return { file, publicKey: line.split(" ").slice(0, 2).join(" ") };
}
