// The disk's floor under a durable push (`npm run bench:push` prints it): a push that makes
// every object durable cannot end before the disk has written its bytes, however well it
// overlaps the writing with its own work; a nosync push (and `nix copy`) ends once the bytes are
// in the page cache. So right after each durable run the bench writes a file of the same size
// as that run's cache and flushes it (like `dd conv=fdatasync`), and reports how long the disk
// took. When that time exceeds the nosync push's, "durability within 5% of nosync" is out of
// reach on this disk at that moment, whatever the code does.
import { randomFillSync } from "node:crypto";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { COMPRESSIONS, type Compression } from "./report.js";
import { median } from "./stats.js";

const BLOCK = 4 << 20;

export interface DiskWrite {
  readonly compression: Compression;
  readonly bytes: number;
  /** Wall seconds to write `bytes` into the page cache and flush them to the disk. */
  readonly seconds: number;
}

/** Writes `bytes` of random data into a new file under `dir`, fdatasyncs it, and removes it. */
export async function measureDiskWrite(
  dir: string,
  compression: Compression,
  bytes: number,
): Promise<DiskWrite> {
  const block = randomFillSync(Buffer.alloc(BLOCK));
  const file = join(dir, `disk-floor-${process.pid}`);
  const handle = await open(file, "w");
  const started = performance.now();
  try {
    for (let written = 0, n = 0; written < bytes; n++) {
      block.writeUInt32LE(n, 0); // no two blocks alike, in case the disk deduplicates
      const size = Math.min(BLOCK, bytes - written);
      await handle.write(block, 0, size);
      written += size;
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
  const seconds = (performance.now() - started) / 1000;
  await rm(file, { force: true });
  return { compression, bytes, seconds };
}

/**
 * Per compression: the disk's median time for a cache's bytes against the nosync push's
 * median wall time, and what that makes of the 5% target.
 */
export function reportDiskFloor(
  writes: readonly DiskWrite[],
  nosyncSeconds: (c: Compression) => number,
): string {
  const lines = [
    "Disk floor: after each durable run, a file of that run's cache size written and flushed",
    "(like dd conv=fdatasync). A durable push cannot end before its bytes are on the disk:",
  ];
  for (const c of COMPRESSIONS) {
    const mine = writes.filter((w) => w.compression === c);
    if (mine.length === 0) continue;
    const disk = median(mine.map((w) => w.seconds));
    const nosync = nosyncSeconds(c);
    const floor = Math.max(disk, nosync) / nosync - 1;
    const range = mine.map((w) => w.seconds.toFixed(2)).join(", ");
    lines.push(
      `  ${c}: ${(median(mine.map((w) => w.bytes)) / 1e6).toFixed(0)} MB took ${disk.toFixed(2)} s` +
        ` (median; ${range}) against ${nosync.toFixed(2)} s for the nosync push,` +
        `\n        so durability costs at least ${(100 * floor).toFixed(1)}% over nosync on this disk` +
        ` (${(median(mine.map((w) => w.bytes / w.seconds)) / 1e6).toFixed(0)} MB/s)`,
    );
  }
  return lines.join("\n");
}
