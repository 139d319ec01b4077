// Where a bench's lab keeps its hosts' stores and its cache: under the bench's directory on this
// machine's disk, or on a tmpfs of the bench's own. On this VM's ext4 (mounted with `discard`)
// creating a store path's files swings several times over with what was deleted on it lately
// (docs/performance.md, "The host's step"); on a tmpfs the tools are measured without the disk.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Local } from "./delta-link.js";

export type LabStore = "disk" | "tmpfs";

/** What a tmpfs may hold: a lab of the 250 MB rebuild takes about 1.5 GB, 20 hosts of 80 MB more. */
const TMPFS_SIZE = "8g";

export interface LabsDir {
  /** The directory to give as NIXSHIP_LAB_DIR. */
  readonly dir: string;
  /** Mounts the tmpfs afresh (nothing on disk); before the lab is up. */
  readonly prepare: () => Promise<void>;
  /** Unmounts it; after the lab is down. */
  readonly release: () => Promise<void>;
}

/** The labs directory of lab `lab` under `root` for `store`. */
export function labsDir(root: string, lab: string, store: LabStore, local: Local): LabsDir {
  if (store === "disk") {
    return { dir: join(root, "labs"), prepare: async () => {}, release: async () => {} };
  }
  // Short: the lab's ssh control sockets live under it, and a socket's path takes at most 107 bytes.
  const dir = join(root, `tmpfs-${lab}`);
  const release = async () => {
    await local("umount", [dir]).catch(() => "");
  };
  return {
    dir,
    prepare: async () => {
      // One left mounted by a run that was killed outright goes first.
      await release();
      await mkdir(dir, { recursive: true });
      await local("mount", [
        "-t",
        "tmpfs",
        "-o",
        `size=${TMPFS_SIZE},mode=0755`,
        `nixship-bench-${lab}`,
        dir,
      ]);
    },
    release,
  };
}
