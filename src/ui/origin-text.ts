// Who published a release (or put a system there) and from what source, as one line of text
// (issue 46).
import type { Origin, OriginSource } from "../release/release-origin.js";

/** One source: the flake, the start of its commit, and whether its tree was dirty. */
export function sourceText(s: OriginSource): string {
  const rev = s.rev === null ? "" : ` at ${s.rev.slice(0, 12)}`;
  const dirty = s.dirty === true ? " (dirty tree)" : "";
  return `${s.flake}${rev}${dirty}`;
}

/** "by WHO from SOURCE, SOURCE" (no sources: by whom alone). */
export function originText(origin: Origin): string {
  const from =
    origin.sources.length === 0 ? "" : ` from ${origin.sources.map(sourceText).join(", ")}`;
  return `by ${origin.by}${from}`;
}
