// The one place a secret's plaintext touches a file on the deployer: a private scratch file
// on a tmpfs (never a disk), for `secrets edit`. Removed after, its bytes overwritten first;
// also when a second interrupt has the process exit at once (it is one of its last words).
import { randomBytes } from "node:crypto";
import { mkdir, open, rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { OperationError } from "../errors.js";
import { onLastWord } from "../util/last-words.js";

/** statfs(2) magic numbers of file systems that live only in memory. */
const MEMORY_FILE_SYSTEMS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

export interface ScratchFile {
  readonly path: string;
  /** Overwrites the file with zeros and removes it and its directory; safe to call twice. */
  remove(): Promise<void>;
}

/** Where scratch files may go: $XDG_RUNTIME_DIR, then /dev/shm, whichever is a tmpfs. */
async function memoryDirectory(env: NodeJS.ProcessEnv): Promise<string> {
  const candidates = [env.XDG_RUNTIME_DIR, "/dev/shm"].filter((d): d is string => !!d);
  for (const dir of candidates) {
    const info = await statfs(dir).catch(() => undefined);
    if (info !== undefined && MEMORY_FILE_SYSTEMS.has(info.type)) return dir;
  }
  throw new OperationError(
    "no-tmpfs",
    `no tmpfs to edit a secret on (tried ${candidates.join(", ")}): its plaintext must not reach a disk`,
    { hint: "mount a tmpfs on /dev/shm, or set XDG_RUNTIME_DIR to one" },
  );
}

/** A new file (mode 0600, in a directory of mode 0700) holding `content`. */
export async function createScratchFile(
  name: string,
  content: Uint8Array,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ScratchFile> {
  const dir = join(await memoryDirectory(env), `nixship-secret-${randomBytes(8).toString("hex")}`);
  await mkdir(dir, { mode: 0o700 });
  const path = join(dir, name);
  let forget = () => {};
  // Forgotten as a last word only once gone: a second interrupt may come while it is removed.
  const remove = async () => {
    const handle = await open(path, "r+").catch(() => undefined);
    if (handle !== undefined) {
      try {
        const { size } = await handle.stat();
        await handle.write(Buffer.alloc(size), 0, size, 0);
      } finally {
        await handle.close();
      }
    }
    await rm(dir, { recursive: true, force: true });
    forget();
  };
  // Until removed: a process made to exit at once (a second interrupt) removes it first.
  forget = onLastWord(remove);
  try {
    const handle = await open(path, "wx", 0o600);
    try {
      await handle.writeFile(content);
    } finally {
      await handle.close();
    }
  } catch (err) {
    await remove();
    throw err;
  }
  return { path, remove };
}
