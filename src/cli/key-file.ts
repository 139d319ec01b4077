// Writing a new secret signing key file (mode 0600), for `key generate` and `init`: never half a
// file, and never over an existing one unless told.
import { randomBytes } from "node:crypto";
import { link, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { InputError, InterruptedError } from "../errors.js";
import { formatSecretKey, type SecretKey } from "../nix/keys.js";
import { requireReplaceable } from "../util/atomic-file.js";
import { errnoWords } from "../util/errno-words.js";
import { onLastWord } from "../util/last-words.js";
import { trapInterrupts } from "./interrupts.js";

/**
 * Writes `key` to `out` (0600); refuses an existing `out` unless `force`. An interrupt while it
 * writes lets the write end (whole, or no file at all), then fails as interrupted; a second one
 * removes the temporary file before the process ends.
 */
export async function writeSecretKeyFile(
  out: string,
  key: SecretKey,
  force: boolean,
): Promise<void> {
  const trap = trapInterrupts({ first: () => {}, second: () => {} });
  try {
    await writeKey(out, key, force);
  } finally {
    trap.release();
  }
  if (trap.signal.aborted) {
    throw new InterruptedError(`${String(trap.signal.reason)} as ${out} was written`, {
      hint: `the key was written whole: 'nixship key public ${out}' prints its public key`,
    });
  }
}

async function writeKey(out: string, key: SecretKey, force: boolean): Promise<void> {
  await requireReplaceable(out);
  // Random, not the pid: a file a killed run left must not block a later run given its pid.
  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(tmp, "wx", 0o600).catch((err: NodeJS.ErrnoException) => {
    throw new InputError("key-unwritable", `cannot write ${out}: ${errnoWords(err)}`);
  });
  // The temporary file goes whatever fails: a write cut short by a full disk leaves no part of
  // the key beside the one asked for (and a second interrupt removes it before the process ends).
  const unregister = onLastWord(() => rm(tmp, { force: true }));
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
    unregister();
  }
}
