// What a plan counts a host must fetch: the closures of the desired and running systems, each
// computed once, and the paths and NAR bytes one lacks of the other. Pure.
import { InputError } from "../errors.js";
import type { PathInfo } from "../nix/closure.js";
import type { StorePath } from "../nix/store-path.js";

/** The closure metadata the planner needs; a full `PathInfo` fits. */
export type ClosureInfo = Pick<PathInfo, "path" | "narSize" | "references">;

/** Store paths and their NAR bytes (uncompressed; what moves compressed is smaller). */
export interface Transfer {
  readonly paths: number;
  readonly bytes: number;
}

/** What a host holds, as far as its report says: the paths its store lacks, or what it runs. */
export interface HostHolding {
  readonly missing?: ReadonlySet<StorePath> | undefined;
  readonly current?: StorePath | undefined;
}

/** Closures computed once per root and differences once per (desired, current) pair. */
export class ClosureIndex {
  private readonly closures = new Map<StorePath, ReadonlySet<StorePath>>();
  private readonly differences = new Map<string, readonly StorePath[]>();
  private readonly checked = new Set<StorePath>();

  constructor(private readonly infos: ReadonlyMap<StorePath, ClosureInfo>) {}

  /** Refuses a desired system whose closure the metadata does not fully cover. */
  requireComplete(root: StorePath, host: string): void {
    if (this.checked.has(root)) return;
    for (const path of this.closure(root)) {
      if (!this.infos.has(path)) {
        const what = path === root ? "" : `, which it references,`;
        throw new InputError(
          "incomplete-closure",
          `no metadata for ${path}${what} in the closure of ${root} (the system of ${host})`,
          { hint: "the desired closures must be built or present in the cache before planning" },
        );
      }
    }
    this.checked.add(root);
  }

  /**
   * The paths of `desired`'s closure the host lacks: those its store lacks where it was asked,
   * else those outside the closure of the system it runs.
   */
  missing(desired: StorePath, host: HostHolding | undefined): readonly StorePath[] {
    if (host?.missing !== undefined) {
      const lacking = host.missing;
      return [...this.closure(desired)].filter((path) => lacking.has(path));
    }
    const current = host?.current;
    const key = `${desired}\n${current ?? ""}`;
    let result = this.differences.get(key);
    if (result === undefined) {
      const present = current === undefined ? new Set<StorePath>() : this.closure(current);
      result = [...this.closure(desired)].filter((path) => !present.has(path));
      this.differences.set(key, result);
    }
    return result;
  }

  measure(paths: Iterable<StorePath>): Transfer {
    let count = 0;
    let bytes = 0;
    for (const path of paths) {
      count++;
      bytes += this.infos.get(path)?.narSize ?? 0;
    }
    return { paths: count, bytes };
  }

  /**
   * The root and everything it references, transitively. A path without metadata is still
   * in the closure (something references it), but its own references are unknown.
   */
  private closure(root: StorePath): ReadonlySet<StorePath> {
    const cached = this.closures.get(root);
    if (cached !== undefined) return cached;
    const found = new Set<StorePath>([root]);
    const stack = [root];
    for (let path = stack.pop(); path !== undefined; path = stack.pop()) {
      for (const ref of this.infos.get(path)?.references ?? []) {
        if (!found.has(ref)) {
          found.add(ref);
          stack.push(ref);
        }
      }
    }
    this.closures.set(root, found);
    return found;
  }
}
