// Who put a system (or a release) there and from what source, as one line of text:
// the status table's note and `release show` say it alike.
import type { Origin, OriginSource } from "../release/release-origin.js";
import { sourceReference } from "../util/source-reference.js";
import type { ShownOrigin } from "../views/host-origins.js";

/** One source: the flake (what identifies it), the start of its commit, whether its tree was dirty. */
export function sourceText(s: OriginSource): string {
  const rev = s.rev === null ? "" : ` at ${s.rev.slice(0, 12)}`;
  const dirty = s.dirty === true ? " (dirty tree)" : "";
  return `${sourceReference(s.flake)}${rev}${dirty}`;
}

/** "by WHO from SOURCE, SOURCE" (no sources: by whom alone). */
export function originText(origin: Origin): string {
  const from =
    origin.sources.length === 0 ? "" : ` from ${origin.sources.map(sourceText).join(", ")}`;
  return `by ${origin.by}${from}`;
}

/** What a status row says of who put the host's system there. */
export function shownOriginText(o: ShownOrigin): string {
  const through =
    o.kind === "rollout"
      ? o.undoes === undefined
        ? `deployed (rollout ${o.ref})`
        : `rolled back (rollout ${o.ref}, undoing ${o.undoes})`
      : o.kind === "release"
        ? `released (release ${o.ref})`
        : "rolled back";
  if (o.problem !== null || o.by === null) {
    return `${through}, by whom unknown: ${o.problem ?? "not said"}`;
  }
  return `${through} ${originText({ by: o.by, sources: o.sources })}`;
}
