// `nixship key generate` and `nixship key public`: Nix-compatible signing keys.
import { UsageError } from "../errors.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import {
  type CliIO,
  type Command,
  parseFlags,
  refuseArguments,
  requireFlag,
  writeJson,
} from "./command.js";
import { writeSecretKeyFile } from "./key-file.js";
import { readSecretKeyFile } from "./keys-input.js";

/** The --json option's help, its lines after the first indented by `indent` spaces. */
const jsonHelp = (indent: number) =>
  `one JSON object on stdout: {"name", "publicKey", "file"}: the key's name,\n${" ".repeat(indent)}its public key ('NAME:BASE64') and the secret key file`;

export const keyGenerate: Command = {
  path: ["key", "generate"],
  summary: "make a signing key pair; prints the public key",
  help: `Usage: nixship key generate --name NAME --out SECRET_FILE [--force] [--json]

Generates an ed25519 signing key in Nix's format (the same as 'nix key generate-secret').
The secret key is written to SECRET_FILE (mode 0600, no trailing newline); the public key
('NAME:BASE64') is printed on stdout, ready for trusted-public-keys.

Options:
  --name NAME       key name, by convention the cache's host name and a number: cache.example.org-1
  --out FILE        where to write the secret key; refuses to overwrite an existing file
  --force           overwrite FILE if it exists
  --json            ${jsonHelp(20)}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        name: { type: "string" },
        out: { type: "string" },
        force: { type: "boolean" },
        json: { type: "boolean" },
      },
      "key generate",
    );
    refuseArguments(positionals, "key generate");
    const name = requireFlag(values.name, "--name", "key generate");
    const out = requireFlag(values.out, "--out", "key generate");
    const key = generateSecretKey(name);
    await writeSecretKeyFile(out, key, values.force === true);
    printPublicKey(io, key, out, values.json === true);
    return 0;
  },
};

export const keyPublic: Command = {
  path: ["key", "public"],
  summary: "print the public key of a secret key file",
  help: `Usage: nixship key public SECRET_FILE [--json]

Prints the public key ('NAME:BASE64') of a Nix secret key file, as
'nix key convert-secret-to-public' does.

Options:
  --json    ${jsonHelp(12)}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { json: { type: "boolean" } }, "key public");
    if (positionals.length !== 1)
      throw new UsageError("key public: expects exactly one SECRET_FILE");
    const file = positionals[0] as string;
    const key = await readSecretKeyFile(file, "key public");
    printPublicKey(io, key, file, values.json === true);
    return 0;
  },
};

/** The public key on stdout: the line trusted-public-keys takes, or with --json an object. */
function printPublicKey(io: CliIO, key: SecretKey, file: string, json: boolean): void {
  const publicKey = formatPublicKey(publicKeyOf(key));
  if (json) writeJson(io, { name: key.name, publicKey, file });
  else io.stdout.write(`${publicKey}\n`);
}
