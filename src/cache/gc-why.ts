// Why a collection lets each path go, and what keeps each kept root, for a dry run to say
// (pure): a path goes with the system a retention rule let go of, in whose closure it is, or
// as unreferenced (no root names it or anything that refers to it) since it was pushed.
import { HASH_PART_LENGTH, STORE_DIR } from "../nix/store-path.js";
import { deltaTargetHashPart } from "./delta-path.js";
import type {
  DeletedPath,
  DoomedInfo,
  GcRoots,
  RootOrigins,
  RootSource,
  RootsRead,
} from "./gc-plan.js";
import type { CacheInventory, CacheObject } from "./inventory.js";

/**
 * A system a retention rule let go of, as what names it says: an old release of a channel
 * (older than the newest `keep`), an agent's confirmed system past its newest `keep`, or a
 * system a rollout gave a host (or the one it ran before) that no status record names now.
 */
export type LetGo =
  | {
      readonly rule: "keep-releases";
      readonly path: string;
      readonly host: string;
      readonly channel: string;
      readonly seq: number;
      readonly keep: number;
    }
  | {
      readonly rule: "keep-generations";
      readonly path: string;
      readonly host: string;
      readonly channel: string;
      readonly keep: number;
    }
  | {
      readonly rule: "status";
      readonly path: string;
      readonly host: string;
      readonly rollout: string;
      readonly at: string;
    };

/**
 * Why a path goes: with a system a rule let go of, as unreferenced (when the narinfo was
 * written, of it or of the unreferenced path whose closure holds it), or as a delta whose
 * target goes. `via`: the system or unreferenced path whose closure holds it (absent: itself).
 */
export type WhyGone =
  | { readonly kind: "let-go"; readonly letGo: LetGo; readonly via?: string }
  | { readonly kind: "unreferenced"; readonly pushed: string; readonly via?: string }
  | { readonly kind: "delta"; readonly target: string };

/** A store path a dry run would delete, and why. */
export interface PathGone {
  readonly storePath: string;
  readonly why: WhyGone;
}

/** A narinfo the collection deletes: its path (when it read), references (hash parts), age. */
export interface DoomedNarInfo {
  readonly storePath?: string;
  readonly references: readonly string[];
  /** When it was written (ms since the epoch). */
  readonly modified: number;
}

function hashOf(path: string): string {
  return path.slice(STORE_DIR.length + 1, STORE_DIR.length + 1 + HASH_PART_LENGTH);
}

/**
 * Why each doomed narinfo (by hash part) goes. The systems let go of are walked first, in the
 * order given, through the doomed references: a path in the closure of one goes with the first
 * that reaches it. What is left goes as unreferenced, with the path that holds it whose
 * referrers all go too (none refers to it), walked in path order.
 */
export function whyGone(
  doomed: ReadonlyMap<string, DoomedNarInfo>,
  letGo: Iterable<LetGo>,
): Map<string, WhyGone> {
  const why = new Map<string, WhyGone>();
  for (const [hash, info] of doomed) {
    const target = info.storePath === undefined ? undefined : deltaTargetHashPart(info.storePath);
    if (target !== undefined)
      why.set(hash, { kind: "delta", target: doomed.get(target)?.storePath ?? target });
  }
  const walk = (start: string, reason: (hash: string) => WhyGone) => {
    const queue = [start];
    for (let i = 0; i < queue.length; i++) {
      const hash = queue[i] as string;
      if (why.has(hash)) continue;
      why.set(hash, reason(hash));
      for (const r of doomed.get(hash)?.references ?? []) {
        if (r !== hash && doomed.has(r) && !why.has(r)) queue.push(r);
      }
    }
  };
  for (const system of letGo) {
    const hash = hashOf(system.path);
    const info = doomed.get(hash);
    if (info === undefined || why.has(hash)) continue;
    const path = info.storePath ?? system.path;
    walk(hash, (h) =>
      h === hash ? { kind: "let-go", letGo: system } : { kind: "let-go", letGo: system, via: path },
    );
  }
  const referred = new Set<string>();
  for (const [hash, info] of doomed) {
    for (const r of info.references) if (r !== hash) referred.add(r);
  }
  const byPath = ([, a]: [string, DoomedNarInfo], [, b]: [string, DoomedNarInfo]) =>
    (a.storePath ?? "").localeCompare(b.storePath ?? "");
  const tops = [...doomed].filter(([hash]) => !referred.has(hash)).sort(byPath);
  // Then any path left (none is, but for a cycle of references), on its own.
  for (const [hash, info] of [...tops, ...[...doomed].sort(byPath)]) {
    if (why.has(hash)) continue;
    const pushed = new Date(info.modified).toISOString();
    const via = info.storePath;
    walk(hash, (h) =>
      h === hash || via === undefined
        ? { kind: "unreferenced", pushed }
        : { kind: "unreferenced", pushed, via },
    );
  }
  return why;
}

/** A kept root: a store path, the sources that keep it, and who named it (the first few). */
export interface KeptRoot {
  readonly path: string;
  readonly sources: readonly RootSource[];
  /** Where it was named ("host web1", "pin installer"), sorted, at most ORIGINS_SHOWN. */
  readonly by: readonly string[];
  /** How many named it in all. */
  readonly byCount: number;
}

/** Origins a kept root lists at most (a system a thousand hosts run is named a thousand times). */
const ORIGINS_SHOWN = 10;

/**
 * The roots named as store paths that the cache holds, each with what keeps it, in path order
 * (the narinfos written within the grace period or --keep-days are counted, not listed).
 */
export function keptRoots(
  roots: GcRoots,
  origins: RootOrigins,
  missing: ReadonlySet<string>,
): KeptRoot[] {
  const kept: KeptRoot[] = [];
  for (const [path, sources] of roots) {
    if (!path.startsWith(`${STORE_DIR}/`) || missing.has(path)) continue;
    const by = [...(origins.get(path) ?? [])].sort();
    kept.push({ path, sources: [...sources], by: by.slice(0, ORIGINS_SHOWN), byCount: by.length });
  }
  return kept.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Why each deleted path goes (the systems the roots' reader found let go of, walked through
 * the doomed narinfos' references) and the kept roots with what keeps each.
 */
export function explainDryRun(
  inventory: CacheInventory,
  narinfos: readonly CacheObject[],
  infos: ReadonlyMap<string, DoomedInfo>,
  read: RootsRead & { readonly letGo?: readonly LetGo[] },
  missing: readonly { readonly path: string }[],
  paths: readonly DeletedPath[],
): { why: PathGone[]; kept: KeptRoot[] } {
  const doomed = new Map(
    narinfos.map((o) => {
      const hash = o.key.slice(0, HASH_PART_LENGTH);
      const info = infos.get(hash);
      return [
        hash,
        {
          ...(info?.storePath === undefined ? {} : { storePath: info.storePath }),
          references: info?.references ?? [],
          modified: inventory.narinfos.get(hash)?.modified ?? o.modified,
        },
      ];
    }),
  );
  const why = whyGone(doomed, read.letGo ?? []);
  return {
    why: paths.flatMap((p) => {
      const reason = why.get(p.narinfo.slice(0, HASH_PART_LENGTH));
      return reason === undefined ? [] : [{ storePath: p.storePath, why: reason }];
    }),
    kept: keptRoots(read.roots, read.origins, new Set(missing.map((m) => m.path))),
  };
}
