// "Did you mean …?": orders known words by edit distance to what the user wrote.

/** Levenshtein distance (insertions, deletions and substitutions each cost 1). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      row.push(Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, substitution));
    }
    previous = row;
  }
  return previous[b.length] ?? 0;
}

/** The candidates, closest to `word` first; equally close ones keep their given order. */
export function closestFirst(word: string, candidates: Iterable<string>): string[] {
  return [...new Set(candidates)]
    .map((candidate, index) => ({ candidate, index, distance: editDistance(word, candidate) }))
    .sort((x, y) => x.distance - y.distance || x.index - y.index)
    .map((c) => c.candidate);
}

/** The closest candidate if it is plausibly a typo of `word` (at most a third of it differs). */
export function likelyTypo(word: string, candidates: Iterable<string>): string | undefined {
  const most = Math.max(1, Math.floor(word.length / 3));
  // The distance is at least the lengths' difference: a word far longer or shorter than a
  // candidate is no typo of it, and is not weighed against it (a cost of both lengths; a
  // planted document's 28 MB key would take seconds).
  const near = [...candidates].filter((c) => Math.abs(c.length - word.length) <= most);
  const best = closestFirst(word, near)[0];
  if (best === undefined) return undefined;
  return editDistance(word, best) <= most ? best : undefined;
}

/** `a, b, c` for a hint, cut after `limit` entries. */
export function listForHint(words: readonly string[], limit = 10): string {
  const shown = words.slice(0, limit).join(", ");
  return words.length > limit ? `${shown}, … (${words.length - limit} more)` : shown;
}
