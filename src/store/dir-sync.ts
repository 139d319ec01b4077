// Directory syncs with group commit, for the fs store's durable writes (and, with
// fs-syncer.ts, file-system syncs).
import { open } from "node:fs/promises";

/**
 * Syncs directories (or, with `syncFileSystem`, the file systems they are on) with group
 * commit: a sync makes durable every change made before it started, so callers that arrive
 * while one is running share the next one, and a push of hundreds of objects costs a few
 * syncs, not hundreds.
 */
export class DirectorySyncs {
  readonly #dirs = new Map<string, DirectorySync>();

  /** `syncOne` fsyncs one directory (tests pass their own). */
  constructor(private readonly syncOne: (dir: string) => Promise<void> = syncDir) {}

  sync(dir: string): Promise<void> {
    const state = this.#dirs.get(dir);
    if (state === undefined) {
      const fresh: DirectorySync = { running: Promise.resolve() };
      this.#dirs.set(dir, fresh);
      fresh.running = this.#run(dir, fresh);
      return fresh.running;
    }
    // The running fsync may have begun before the caller's change: share the next one.
    state.next ??= state.running
      .catch(() => undefined)
      .then(() => {
        state.next = undefined;
        state.running = this.#run(dir, state);
        return state.running;
      });
    return state.next;
  }

  #run(dir: string, state: DirectorySync): Promise<void> {
    const running: Promise<void> = this.syncOne(dir).finally(() => {
      // Nobody is waiting for a later fsync: forget the directory.
      if (state.running === running && state.next === undefined) this.#dirs.delete(dir);
    });
    return running;
  }
}

interface DirectorySync {
  running: Promise<void>;
  next?: Promise<void>;
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  await handle.sync().finally(() => handle.close());
}
