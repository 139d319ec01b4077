// A host's last change as a closure diff (a dashboard host page): from the system it ran before
// to the one it runs now, both closures read from the fleet's cache by the narinfos' References
// (cache/closure-walk.ts), within a bound. Where the cache lacks either closure, it says why.
import { walkClosure } from "../cache/closure-walk.js";
import { type ClosureDiff, type ClosurePath, diffClosures } from "../nix/closure-diff.js";
import type { ObjectStore } from "../store/object-store.js";

/** Narinfos a host page reads at most for one change (a GET each). */
export const MAX_CHANGE_READS = 20_000;

export type HostChange =
  | {
      readonly status: "diff";
      readonly from: string;
      readonly to: string;
      readonly diff: ClosureDiff;
    }
  | { readonly status: "none"; readonly why: string };

export async function readHostChange(
  store: ObjectStore,
  from: string | null | undefined,
  to: string | null | undefined,
  maxReads = MAX_CHANGE_READS,
): Promise<HostChange> {
  if (from === null || from === undefined || to === null || to === undefined) {
    return {
      status: "none",
      why: "The host's record does not say what it ran before its last change.",
    };
  }
  if (from === to) return { status: "none", why: "Its last change left it on the same system." };
  let budget = maxReads;
  const holds = () => budget-- > 0;
  const closure = async (root: string): Promise<ClosurePath[] | string> => {
    const walk = await walkClosure(store, [root], { holds });
    if (budget < 0) return `reading the closures stopped at ${maxReads} narinfos`;
    if (walk.missing.length > 0) {
      return `the cache lacks ${walk.missing.length} path(s) of ${root}'s closure (first: ${walk.missing[0]})`;
    }
    return [...walk.found.values()].map((i) => ({ path: i.storePath, narSize: i.narSize }));
  };
  const before = await closure(from);
  if (typeof before === "string") return { status: "none", why: `No diff: ${before}.` };
  const after = await closure(to);
  if (typeof after === "string") return { status: "none", why: `No diff: ${after}.` };
  return { status: "diff", from, to, diff: diffClosures(before, after) };
}
