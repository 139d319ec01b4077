// Writing a new secret signing key file (mode 0600), for `key generate` and `init`: never half a
// file, and never over an existing one unless told.
import { randomBytes } from "node:crypto";
import { link, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { InputError } from "../errors.js";
import { formatSecretKey, type SecretKey } from "../nix/keys.js";
import { requireReplaceable } from "../util/atomic-file.js";
import { errnoWords } from "../util/errno-words.js";

/** Writes `key` to `out` (0600); refuses an existing `out` unless `force`. */
export async function writeSecretKeyFile(
  out: string,
  key: SecretKey,
  force: boolean,
): Promise<void> {
  await requireReplaceable(out);
  // Random, not the pid: a file a killed run left must not block a later run given its pid.
  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(tmp, "wx", 0o600).catch((err: NodeJS.ErrnoException) => {
    throw new InputError("key-unwritable", `cannot write ${out}: ${errnoWords(err)}`);
  });
  // The temporary file goes whatever fails: a write cut short by a full disk leaves no part of
  // the key beside the one asked for.
  try {
    try {
      await handle.writeFile(formatSecretKey(key));
      await handle.sync();
    } finally {
      await handle.close();
    }
    // link() refuses to replace an existing file, atomically; force replaces with rename().
    if (force) await rename(tmp, out);
    else {
      await link(tmp, out).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "EEXIST") {
          throw new InputError("key-exists", `${out} already exists; pass --force to overwrite it`);
        }
        throw new InputError("key-unwritable", `cannot write ${out}: ${errnoWords(err)}`);
      });
    }
  } finally {
    await rm(tmp, { force: true });
  }
}
