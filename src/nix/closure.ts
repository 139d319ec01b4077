// Closure graphs: the metadata of store paths and their references, in dependency order.
import { InputError } from "../errors.js";
import type { Sha256 } from "./hash.js";
import type { StorePath } from "./store-path.js";

export interface PathInfo {
  readonly path: StorePath;
  readonly narHash: Sha256;
  readonly narSize: number;
  readonly references: readonly StorePath[];
  readonly deriver: string | undefined;
  readonly sigs: readonly string[];
  readonly ca: string | undefined;
}

/**
 * Orders paths so that every path comes after the paths it references (self-references
 * aside). References outside the given set are ignored; cycles are a malformed closure.
 */
export function referencesFirst<T extends Pick<PathInfo, "path" | "references">>(
  infos: readonly T[],
): T[] {
  const byPath = new Map(infos.map((i) => [i.path, i]));
  const state = new Map<string, "visiting" | "done">();
  const out: T[] = [];
  const visit = (info: T, chain: string[]): void => {
    const s = state.get(info.path);
    if (s === "done") return;
    if (s === "visiting") {
      throw new InputError(
        "closure-cycle",
        `store paths reference each other in a cycle: ${[...chain, info.path].join(" -> ")}`,
      );
    }
    state.set(info.path, "visiting");
    for (const ref of [...info.references].sort()) {
      const dep = byPath.get(ref);
      if (dep && ref !== info.path) visit(dep, [...chain, info.path]);
    }
    state.set(info.path, "done");
    out.push(info);
  };
  for (const info of [...infos].sort((a, b) => (a.path < b.path ? -1 : 1))) visit(info, []);
  return out;
}

/**
 * The closure of `roots` taken from `known` (a closure Nix gave, such as the push's), or
 * undefined where `known` lacks a root or a reference: then Nix is asked.
 */
export function closureWithin(
  roots: readonly StorePath[],
  known: ReadonlyMap<StorePath, PathInfo>,
): PathInfo[] | undefined {
  if (roots.length === 0 || known.size === 0) return undefined;
  const found = new Map<StorePath, PathInfo>();
  const pending = [...roots];
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    if (found.has(path)) continue;
    const info = known.get(path);
    if (info === undefined) return undefined;
    found.set(path, info);
    pending.push(...info.references);
  }
  return [...found.values()];
}
