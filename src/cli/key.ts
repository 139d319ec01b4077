// `nixship key generate` and `nixship key public`: Nix-compatible signing keys.
import { UsageError } from "../errors.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { type Command, parseFlags, refuseArguments, requireFlag } from "./command.js";
import { writeSecretKeyFile } from "./key-file.js";
import { readSecretKeyFile } from "./keys-input.js";

export const keyGenerate: Command = {
  path: ["key", "generate"],
  summary: "make a signing key pair; prints the public key",
  help: `Usage: nixship key generate --name NAME --out SECRET_FILE [--force]

Generates an ed25519 signing key in Nix's format (the same as 'nix key generate-secret').
The secret key is written to SECRET_FILE (mode 0600, no trailing newline); the public key
('NAME:BASE64') is printed on stdout, ready for trusted-public-keys.

Options:
  --name NAME       key name, by convention the cache's host name and a number: cache.example.org-1
  --out FILE        where to write the secret key; refuses to overwrite an existing file
  --force           overwrite FILE if it exists`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { name: { type: "string" }, out: { type: "string" }, force: { type: "boolean" } },
      "key generate",
    );
    refuseArguments(positionals, "key generate");
    const name = requireFlag(values.name, "--name", "key generate");
    const out = requireFlag(values.out, "--out", "key generate");
    const key = generateSecretKey(name);
    await writeSecretKeyFile(out, key, values.force === true);
    io.stdout.write(`${formatPublicKey(publicKeyOf(key))}\n`);
    return 0;
  },
};

export const keyPublic: Command = {
  path: ["key", "public"],
  summary: "print the public key of a secret key file",
  help: `Usage: nixship key public SECRET_FILE

Prints the public key ('NAME:BASE64') of a Nix secret key file, as
'nix key convert-secret-to-public' does.`,
  async run(argv, io) {
    const { positionals } = parseFlags(argv, {}, "key public");
    if (positionals.length !== 1)
      throw new UsageError("key public: expects exactly one SECRET_FILE");
    const key = await readSecretKeyFile(positionals[0] as string, "key public");
    io.stdout.write(`${formatPublicKey(publicKeyOf(key))}\n`);
    return 0;
  },
};
