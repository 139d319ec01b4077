// Lists the nodes of a NAR without unpacking it, and formats them as `nix nar ls -lR` does.
import { decodeNar, type NarSource } from "./nar-decode.js";

export type NarEntry =
  | { readonly path: string; readonly type: "directory" }
  | {
      readonly path: string;
      readonly type: "regular";
      readonly size: number;
      readonly executable: boolean;
    }
  | { readonly path: string; readonly type: "symlink"; readonly target: string };

/** Every node in archive order (the root first, with path ""), validating the whole NAR. */
export async function listNar(source: NarSource): Promise<NarEntry[]> {
  const entries: NarEntry[] = [];
  for await (const ev of decodeNar(source)) {
    switch (ev.kind) {
      case "directory":
        entries.push({ path: ev.path, type: "directory" });
        break;
      case "file":
        entries.push({ path: ev.path, type: "regular", size: ev.size, executable: ev.executable });
        break;
      case "symlink":
        entries.push({ path: ev.path, type: "symlink", target: ev.target });
        break;
      case "data":
        break;
    }
  }
  return entries;
}

/**
 * The text of `nix nar ls -lR <nar> /`: `<mode> <size, width 20> <path>[ -> target]` per line.
 * Nix leaves out a root directory, names children `./<path>`, and prints a root file or
 * symlink with an empty name. Directories and symlinks show size 0.
 */
export function formatNarListing(entries: readonly NarEntry[]): string {
  return [...narListingLines(entries)].join("");
}

/**
 * formatNarListing's lines, one at a time: a listing can be far larger than one string may
 * be (each line holds its whole path: a small NAR of deep directories lists gigabytes).
 */
export function* narListingLines(entries: readonly NarEntry[]): Generator<string> {
  for (const e of entries) {
    if (e.path === "" && e.type === "directory") continue;
    const name = e.path === "" ? "" : `./${e.path}`;
    const size = e.type === "regular" ? e.size : 0;
    const target = e.type === "symlink" ? ` -> ${e.target}` : "";
    yield `${modeString(e)} ${String(size).padStart(20)} ${name}${target}\n`;
  }
}

function modeString(e: NarEntry): string {
  switch (e.type) {
    case "directory":
      return "dr-xr-xr-x";
    case "symlink":
      return "lrwxrwxrwx";
    case "regular":
      return e.executable ? "-r-xr-xr-x" : "-r--r--r--";
  }
}
