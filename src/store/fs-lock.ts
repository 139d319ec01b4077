// A per-key lock file for the fs store's compare-and-swap (`ifMatch`) puts, shared by every
// process that writes the same directory. O_EXCL creation is the atomic step.
import { open, stat, unlink } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { OperationError } from "../errors.js";

/** A lock this old belongs to a crashed writer: a live holder keeps it for milliseconds. */
export const STALE_LOCK_MS = 30_000;
/** Longer than STALE_LOCK_MS, so a waiter always outlives a stale lock and recovers it. */
const WAIT_LIMIT_MS = STALE_LOCK_MS + 10_000;

export async function withLock<T>(lockPath: string, body: () => Promise<T>): Promise<T> {
  await acquire(lockPath);
  try {
    return await body();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}

async function acquire(lockPath: string): Promise<void> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  for (let delay = 2; ; delay = Math.min(delay * 2, 100)) {
    try {
      const handle = await open(lockPath, "wx");
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    // Two waiters may both judge the same lock stale; the window is one stat+unlink long, and
    // only reachable after a crash, so it is accepted rather than solved with more machinery.
    const age = await stat(lockPath).then(
      (s) => Date.now() - s.mtimeMs,
      () => 0,
    );
    if (age > STALE_LOCK_MS) {
      await unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) {
      throw new OperationError("store-lock-timeout", `timed out waiting for lock ${lockPath}`, {
        hint: "another nixship process is writing this key; if none is, delete the lock file",
      });
    }
    await sleep(delay + Math.random() * delay);
  }
}
