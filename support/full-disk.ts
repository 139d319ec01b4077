// A full disk, stood in for where a test needs one on demand (no real part here fills a disk
// at will): node:fs/promises whose `open` gives, for the paths `when` picks, a file handle
// whose writeFile writes `written` of the data (none by default) and then fails with ENOSPC.
// Everything else is the real file system. For vi.mock's factory:
//   vi.mock("node:fs/promises", async (original) =>
//     (await import("…/support/full-disk.js")).fullDisk(await original(), (path) => …));
import type * as fsPromises from "node:fs/promises";

type Fs = typeof fsPromises;

export function fullDisk(
  fs: Fs,
  when: (path: string) => boolean,
  written: (data: string | Uint8Array) => string | Uint8Array = () => "",
): Fs {
  return {
    ...fs,
    open: (async (...args: Parameters<Fs["open"]>) => {
      const handle = await fs.open(...args);
      if (!when(String(args[0]))) return handle;
      return Object.assign(Object.create(handle) as typeof handle, {
        writeFile: async (data: string | Uint8Array) => {
          const part = written(data);
          if (part.length > 0) await handle.write(Buffer.from(part));
          throw Object.assign(new Error("ENOSPC: no space left on device, write"), {
            code: "ENOSPC",
          });
        },
        close: () => handle.close(),
      });
    }) as Fs["open"],
  };
}
