// A secret's ciphertext file beside the fleet file (safe to commit): read bounded, written
// atomically so an interrupted write leaves the old file whole.
import { mkdir, open } from "node:fs/promises";
import { dirname } from "node:path";
import { InputError } from "../errors.js";
import { writeFileAtomically } from "../util/atomic-file.js";

/** The largest plaintext a secret may hold: keys, passwords and certificates, not data. */
export const MAX_PLAINTEXT = 512 * 1024;
/** The largest ciphertext file read: the plaintext's limit, plus a header for many recipients. */
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 128 * 1024;

/** The file's bytes; undefined when it does not exist. */
export async function readCiphertext(file: string): Promise<Uint8Array | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw new InputError("secret-file-unreadable", `cannot read ${file}: ${code ?? String(err)}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new InputError("secret-file-unreadable", `${file} is not a file`);
    if (info.size > MAX_CIPHERTEXT) {
      throw new InputError(
        "secret-file-too-large",
        `${file} holds ${info.size} bytes, more than a secret's ciphertext may (${MAX_CIPHERTEXT})`,
      );
    }
    const buffer = Buffer.alloc(info.size);
    const { bytesRead } = await handle.read(buffer, 0, info.size, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

export async function writeCiphertext(file: string, ciphertext: Uint8Array): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFileAtomically(file, ciphertext, 0o644);
}
