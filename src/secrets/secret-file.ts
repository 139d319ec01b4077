import { dirname } from "node:path";
import { InputError } from "../errors.js";
import { writeFilesAtomically } from "../util/atomic-file.js";
import { readFileBounded } from "../util/bounded-file.js";
import { makeDirs } from "../util/make-dirs.js";

/** The largest plaintext a secret may hold: keys, passwords and certificates, not data. */
export const MAX_PLAINTEXT = 512 * 1024;
/** The largest ciphertext file read: the plaintext's limit, plus a header for many recipients. */
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 128 * 1024;

/**
 * Refuses a secret's file that was encrypted as another secret (its header's `nixship-secret`
 * stanza names it): a host installs a file under the name it was encrypted as alone, and
 * encrypting it again under this name would hand the other secret's value to this one's hosts.
 * It is restored, or set anew; never rekeyed.
 */
export function requireOwnFile(
  name: string,
  file: string,
  encryptedAs: string | undefined,
  setCommand: string,
): void {
  if (encryptedAs === undefined || encryptedAs === name) return;
  throw new InputError(
    "secret-file-of-another",
    `secret "${name}" (${file}) was encrypted as secret "${encryptedAs}": it holds that secret's value (a file copied or renamed), and a host installs a secret's file under the name it was encrypted as alone`,
    {
      hint: `restore ${file} from version control, or set the secret anew: ${setCommand}; it is never encrypted again under this name (that would give "${encryptedAs}"'s value to this secret's hosts)`,
    },
  );
}

/** The file's bytes; undefined when it does not exist. */
export async function readCiphertext(file: string): Promise<Uint8Array | undefined> {
  try {
    return await readFileBounded(
      file,
      MAX_CIPHERTEXT,
      (size) =>
        new InputError(
          "secret-file-too-large",
          `${file} holds ${size} bytes, more than a secret's ciphertext may (${MAX_CIPHERTEXT})`,
        ),
    );
  } catch (err) {
    if (err instanceof InputError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new InputError(
      "secret-file-unreadable",
      code === "ENOTFILE" ? `${file} is not a file` : `cannot read ${file}: ${code ?? String(err)}`,
    );
  }
}

export async function writeCiphertext(file: string, ciphertext: Uint8Array): Promise<void> {
  await writeCiphertexts([{ file, ciphertext }]);
}

/** Writes several secrets' files at once: a failed write leaves every one as it was. */
export async function writeCiphertexts(
  files: readonly { readonly file: string; readonly ciphertext: Uint8Array }[],
): Promise<void> {
  for (const dir of new Set(files.map(({ file }) => dirname(file)))) {
    await makeDirs(dir);
  }
  await writeFilesAtomically(
    files.map(({ file, ciphertext }) => ({ file, content: ciphertext, mode: 0o644 })),
  );
}
