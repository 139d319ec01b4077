// Strings kept long that were cut from a larger text. V8 makes a slice of a string (split,
// slice, a regular expression's match) a view into the whole, so a store path cut from a
// narinfo keeps that narinfo's text alive as long as the path lives: reading a million
// narinfos to keep their paths and references would hold every text read.

/** A copy of `text` that holds no other string alive (flat, its own characters). */
export function detached(text: string): string {
  return Buffer.from(text, "utf8").toString("utf8");
}
