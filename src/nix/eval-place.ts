// Where a Nix evaluation error is, as nixship's messages name it: Nix names the file in its copy
// of the flake (/nix/store/…-source/nixship.nix:15:76), which is mapped back to the file the user
// edits. Reads the file system (whether a file exists), nothing else.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { EvalLocation } from "./eval-trace.js";

const STORE_SOURCE = /^\/nix\/store\/[0-9a-z]{32}-source\/(.+)$/;

/**
 * Where an evaluation error is, as its message names it: the local file Nix's copy of the flake
 * came from (`DIR/nixship.nix:15:76`), under the directory Nix copied for `flake` (a
 * `git+file://TOP?dir=SUB` flake: the repository's top; `path:DIR`: DIR); else (a remote flake,
 * or a file of another input, such as nixpkgs) the file Nix named, beside `label`; `label` alone
 * when Nix named no file.
 */
export function evalPlace(
  label: string,
  location: EvalLocation | undefined,
  flake: string,
): string {
  if (location === undefined) return label;
  const at = `${location.line}:${location.column}`;
  const copied = STORE_SOURCE.exec(location.file)?.[1];
  if (copied === undefined) return `${location.file}:${at}`;
  const root = copiedRoot(flake);
  const local = root === undefined ? undefined : join(root, copied);
  if (local !== undefined && existsSync(local)) return `${local}:${at}`;
  return `${label} (at ${location.file}:${at})`;
}

/** The local directory Nix copies for a flake reference; undefined: not a local one. */
function copiedRoot(flake: string): string | undefined {
  const m = /^(?:git\+file|path):(?:\/\/)?(\/[^?#]*)/.exec(flake);
  return m?.[1] === undefined ? undefined : decodeURIComponent(m[1]);
}
