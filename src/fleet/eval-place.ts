// Where a Nix evaluation error is, as nixship's messages name it: Nix names the file in its copy
// of the flake (/nix/store/…-source/nixship.nix:15:76), which is mapped back to the file the user
// edits. Reads the file system (whether a file exists), nothing else.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { EvalLocation } from "./flake-fleet.js";

const STORE_SOURCE = /^\/nix\/store\/[0-9a-z]{32}-source\/(.+)$/;

/**
 * Where an evaluation error is, as its message names it: the local file Nix's copy of the flake
 * came from (`DIR/nixship.nix:15:76`: the file under `dir` or the nearest directory above it
 * that holds it, since a flake in a git repository is copied from the repository's top), or,
 * when none holds it (a remote flake), the copy's relative path beside `label`; `label` alone
 * when Nix named no file.
 */
export function evalPlace(
  label: string,
  location: EvalLocation | undefined,
  dir: string | null,
): string {
  if (location === undefined) return label;
  const at = `${location.line}:${location.column}`;
  const copied = STORE_SOURCE.exec(location.file)?.[1];
  if (copied === undefined) return `${location.file}:${at}`;
  for (let d = dir; d !== null; d = dirname(d) === d ? null : dirname(d)) {
    const local = join(d, copied);
    if (existsSync(local)) return `${local}:${at}`;
  }
  return `${label} (${copied}:${at} in its source)`;
}
