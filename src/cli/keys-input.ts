// Reading keys named on the command line: secret key files, and trusted public keys given
// either literally (`name:base64`) or as files holding one or more of them.
import { readFile } from "node:fs/promises";
import { InputError, UsageError } from "../errors.js";
import { type PublicKey, parsePublicKey, parseSecretKey, type SecretKey } from "../nix/keys.js";

export async function readSecretKeyFile(file: string): Promise<SecretKey> {
  const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new InputError(
      "key-unreadable",
      `cannot read secret key file ${file}: ${err.code ?? err.message}`,
    );
  });
  try {
    return parseSecretKey(text);
  } catch (err) {
    throw new InputError("bad-key", `${file}: ${(err as Error).message}`);
  }
}

export async function readTrustedKeys(values: readonly string[]): Promise<PublicKey[]> {
  const keys: PublicKey[] = [];
  for (const value of values) {
    if (/^[^/:\s]+:[A-Za-z0-9+/=]+$/.test(value.trim())) {
      keys.push(parsePublicKey(value));
      continue;
    }
    const text = await readFile(value, "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new InputError(
        "key-unreadable",
        `--trusted-key '${value}' is neither a public key (NAME:BASE64) nor a readable file (${err.code ?? err.message})`,
      );
    });
    for (const word of text.split(/\s+/).filter(Boolean)) {
      try {
        keys.push(parsePublicKey(word));
      } catch (err) {
        throw new InputError("bad-key", `${value}: ${(err as Error).message}`);
      }
    }
  }
  return keys;
}

/** The keys of a command's `--trusted-key` flags, at least one being required. */
export async function requireTrustedKeys(
  flags: readonly string[] | undefined,
  command: string,
): Promise<PublicKey[]> {
  if (!flags || flags.length === 0) {
    throw new UsageError(
      `${command}: at least one --trusted-key is required`,
      `see 'nixship ${command} --help'`,
    );
  }
  return readTrustedKeys(flags);
}
