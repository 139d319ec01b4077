// Reading keys named on the command line: secret key files, and trusted public keys given
// either literally (`name:base64`) or as files holding one or more of them.
import { readFile, stat } from "node:fs/promises";
import { InputError, UsageError } from "../errors.js";
import { requireTrustedSigningKey } from "../fleet/cache-trust.js";
import { type PublicKey, parsePublicKey, parseSecretKey, type SecretKey } from "../nix/keys.js";
import { STORE_DIR } from "../nix/store-path.js";
import { readFileBounded } from "../util/bounded-file.js";

/** The most a secret file (a key, a token) may hold: far above any real one. */
const SECRET_FILE_LIMIT = 64 * 1024;

/**
 * Whether a value given where a file name belongs looks like the secret itself (`--key
 * "$(cat k.sec)"`): such a value must never be echoed.
 */
function looksLikeSecret(value: string): boolean {
  return (
    /[\n\r]/.test(value) ||
    /^[^/\s]*:[A-Za-z0-9+/=_-]{16,}$/.test(value.trim()) ||
    /^AGE-SECRET-KEY-/i.test(value.trim())
  );
}

/**
 * Whether a path that names no file looks like a token or key given in its place: a run of
 * base64 (upper and lower case letters and digits) of 24 characters or more, or of hex of 32,
 * with no dot and not written as a path; or, as the last part of a path resolved against a
 * directory (a fleet's `bearerTokenFile`), a base64 run of 32 or more (a file named by a hex
 * digest, as /run/secrets holds, is shown).
 */
function looksLikeToken(file: string): boolean {
  const base64 = (c: string, length: number) =>
    new RegExp(`^[A-Za-z0-9+/=_-]{${length},}$`).test(c) &&
    /[A-Z]/.test(c) &&
    /[a-z]/.test(c) &&
    /[0-9]/.test(c);
  const whole = file.trim();
  if (!/^[/.~]/.test(whole) && (base64(whole, 24) || /^[0-9a-f]{32,}$/i.test(whole))) return true;
  return base64(file.slice(file.lastIndexOf("/") + 1), 32);
}

/**
 * Whether a value given where a file's name belongs may be a secret itself: a control
 * character, a secret key's text, or a token (looksLikeToken). Never echoed in a message.
 */
export function mayBeSecret(value: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
  return /[\x00-\x1f\x7f]/.test(value) || looksLikeSecret(value) || looksLikeToken(value);
}

/**
 * A value given where a public key or its file belongs, as a message shows it: quoted, unless
 * it looks like a secret or a token (a secret key's text given by mistake is not echoed).
 */
function shownValue(value: string, quote: string): string {
  return mayBeSecret(value)
    ? `(${value.length} characters that look like a secret, not shown)`
    : `${quote}${value}${quote}`;
}

/** Who named a secret file (the flag or field, `$NIXSHIP_RELEASE_KEY`), and how to make one. */
export interface SecretFileNamer {
  readonly name: string;
  /** The hint for a file that is not there: the command that makes one. */
  readonly make: string;
}

/**
 * Reads a file holding a secret (`what`: "secret key file", "--token-file"): refused when
 * others may read it (as ssh refuses such keys), when it is larger than any secret, or when
 * it cannot be read; one that is not there is named by `named` (else `what`), with how to
 * make one. No message ever holds the secret: a value that looks like the secret itself
 * rather than a file name is not echoed either.
 */
export async function readSecretFile(
  file: string,
  what: string,
  named?: SecretFileNamer,
): Promise<string> {
  if (looksLikeSecret(file)) {
    throw new UsageError(
      `${what}: expected the path of a file holding the secret; what was given looks like the secret itself (not shown)`,
      "write the secret to a file with mode 0600 and pass its path",
    );
  }
  const unreadable = (err: NodeJS.ErrnoException): never => {
    if (err.code === "ENOENT" && looksLikeToken(file)) {
      throw new InputError(
        "key-missing",
        `${named?.name ?? what}: no such file, and what was given (${file.length} characters, not shown) looks like a secret rather than a file's path`,
        {
          hint: "write the secret to a file with mode 0600 and pass its path (if it is a file's path, that file is not there)",
        },
      );
    }
    if (err.code === "ENOENT") {
      throw new InputError("key-missing", `${named?.name ?? what} ${file}: no such file`, {
        ...(named === undefined ? {} : { hint: named.make }),
      });
    }
    throw new InputError(
      "key-unreadable",
      `cannot read ${what} ${file}: ${err.code ?? err.message}`,
    );
  };
  const info = await stat(file).catch(unreadable);
  if (!info.isFile()) throw new InputError("key-unreadable", `${what} ${file} is not a file`);
  // A path in a Nix file (`./token`), or a file of a flake that is not a git repository, is
  // copied into the store, where every user may read it: the secret is out already.
  if (file.startsWith(`${STORE_DIR}/`)) {
    throw new InputError(
      "key-in-store",
      `${what} ${file} is in the Nix store, where every user of the machine may read it`,
      {
        hint: 'make a new one (the one there is exposed), keep it outside the flake, and give its path as a string ("/etc/nixship/…"), not a Nix path (./…), which Nix copies into the store',
      },
    );
  }
  if ((info.mode & 0o077) !== 0) {
    throw new InputError(
      "key-exposed",
      `${what} ${file} may be read by others (mode ${(info.mode & 0o777).toString(8).padStart(4, "0")})`,
      { hint: `chmod 600 ${file}` },
    );
  }
  if (info.size > SECRET_FILE_LIMIT) {
    throw new InputError(
      "key-unreadable",
      `${what} ${file} holds ${info.size} bytes, more than any secret (at most ${SECRET_FILE_LIMIT})`,
    );
  }
  return readFile(file, "utf8").catch(unreadable);
}

/** The public key `text` is (`NAME:BASE64` of 32 bytes), if it is one. */
function asPublicKey(text: string): PublicKey | undefined {
  try {
    return parsePublicKey(text.trim());
  } catch {
    return undefined;
  }
}

/** A public key where its secret key belongs (`flag`: the option that named it). */
function publicKeyGiven(where: string, key: PublicKey, flag: string): InputError {
  return new InputError(
    "public-key-given",
    `${flag}: ${where} is a public key ('${key.name}'), not a secret key`,
    {
      hint: `${flag} takes the secret key file its public key was made from ('nixship key generate --name ${key.name} --out SECRET_FILE' wrote it, mode 0600); the public key itself belongs in the fleet file (cache.publicKeys, releases.publicKeys) or --trusted-key`,
    },
  );
}

/**
 * Reads a secret key file (`flag`: the option or variable that named it, for messages). A
 * public key given instead, as the value or in the file, is named as such, with the file that
 * is wanted; a file that is not there, with the command that makes one.
 */
export async function readSecretKeyFile(file: string, flag = "--key"): Promise<SecretKey> {
  const literal = asPublicKey(file);
  if (literal !== undefined) throw publicKeyGiven(`'${file.trim()}'`, literal, flag);
  // A public key file is no secret (and is often readable by all): said before its mode is.
  const small = await stat(file).then(
    (info) => info.isFile() && info.size <= 1024,
    () => false,
  );
  const inFile = small ? asPublicKey(await readFile(file, "utf8").catch(() => "")) : undefined;
  if (inFile !== undefined) throw publicKeyGiven(file, inFile, flag);
  const text = await readSecretFile(file, "secret key file", {
    name: flag,
    make: `make one with 'nixship key generate --name NAME --out ${file}' (mode 0600); the public key it prints goes in the fleet file's ${/release/i.test(flag) ? "releases.publicKeys" : "cache.publicKeys"}`,
  });
  try {
    return parseSecretKey(text);
  } catch (err) {
    throw new InputError("bad-key", `${file}: ${(err as Error).message}`);
  }
}

/** The most a file of public keys given to --trusted-key may hold (a key is about 60 bytes). */
const TRUSTED_KEYS_FILE_LIMIT = 64 * 1024;

/**
 * The public keys `values` give, each a key (NAME:BASE64) or a file of them; `flag` names the
 * flag they came from in errors (--trusted-key, --cache-key).
 */
export async function readTrustedKeys(
  values: readonly string[],
  flag = "--trusted-key",
): Promise<PublicKey[]> {
  const keys: PublicKey[] = [];
  for (const value of values) {
    if (/^[^/:\s]+:[A-Za-z0-9+/=]+$/.test(value.trim())) {
      keys.push(parsePublicKey(value));
      continue;
    }
    const tooLarge = (size: number) =>
      new InputError(
        "key-file-too-large",
        `${flag} ${value}: ${size} bytes or more, where a file of public keys holds at most ${TRUSTED_KEYS_FILE_LIMIT}: not a key file`,
      );
    const bytes = await readFileBounded(value, TRUSTED_KEYS_FILE_LIMIT, tooLarge).catch(
      (err: NodeJS.ErrnoException) => {
        if (err instanceof InputError) throw err;
        throw new InputError(
          "key-unreadable",
          `${flag} ${shownValue(value, "'")} is neither a public key (NAME:BASE64) nor a readable file (${err.code === "ENOTFILE" ? "not a regular file" : (err.code ?? err.message)})`,
        );
      },
    );
    if (bytes === undefined) {
      throw new InputError("key-missing", `${flag} ${shownValue(value, "")}: no such file`, {
        hint: "give the public key itself (NAME:BASE64, as 'nixship key public SECRET_FILE' prints it) or a file that holds it",
      });
    }
    const words = bytes.toString("utf8").split(/\s+/).filter(Boolean);
    // A file with no key at all would trust nothing, and every signature would read as made
    // by a key that is not trusted: the file is what is wrong, and is named.
    if (words.length === 0) {
      throw new InputError("bad-key", `${flag} ${value}: the file holds no public key`, {
        hint: "put the public key in it (NAME:BASE64, as 'nixship key public SECRET_FILE' prints it), or give the key itself",
      });
    }
    for (const word of words) {
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

/**
 * Where the release signing key comes from: `--release-key FILE`, else $NIXSHIP_RELEASE_KEY;
 * `name` is what messages call it. Undefined when neither gives one (an empty variable gives none).
 */
export function releaseKeySource(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
): { readonly file: string; readonly name: string } | undefined {
  if (flag !== undefined) return { file: flag, name: "--release-key" };
  // Set empty (`NIXSHIP_RELEASE_KEY= nixship …`) is unset, as a shell user means it.
  const file = env.NIXSHIP_RELEASE_KEY;
  return file === undefined || file === "" ? undefined : { file, name: "$NIXSHIP_RELEASE_KEY" };
}

/**
 * The release key from `--release-key` or `$NIXSHIP_RELEASE_KEY` (undefined: neither is given),
 * refused unless the fleet's agents trust it (`releases.publicKeys`): a release it signed would
 * move the channel to a release every agent refuses.
 */
export async function readReleaseKey(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  fleet: { readonly releases?: { readonly publicKeys: readonly string[] } | undefined },
  fleetFile: string,
): Promise<SecretKey | undefined> {
  const source = releaseKeySource(flag, env);
  if (source === undefined) return undefined;
  const key = await readSecretKeyFile(source.file, source.name);
  if (fleet.releases !== undefined) {
    requireTrustedSigningKey(key, fleet.releases.publicKeys, fleetFile, "releases.publicKeys");
  }
  return key;
}

/** How to make a token file that is not there (`--token-file`). */
export function tokenFileNamer(file: string): SecretFileNamer {
  return {
    name: "--token-file",
    make: `write a random token of at least 16 characters to it, mode 0600: (umask 077; head -c 32 /dev/urandom | base64 > ${file})`,
  };
}
