// Human-readable figures for progress lines and summaries.

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n;
  let u = -1;
  do {
    v /= 1000;
    u++;
  } while (v >= 1000 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

export function formatSeconds(s: number): string {
  return s < 60 ? `${s.toFixed(2)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** `n` and its noun: "1 path", "2 paths". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * `part` of `whole` and their noun, plural unless both are one: "1 of 1 path", "0 of 1 paths",
 * "2 of 3 paths" (the noun counts the part of the whole it names, so "0 of 1 path" is wrong).
 */
export function partOf(part: number, whole: number, one: string, many = `${one}s`): string {
  return `${part} of ${part === whole ? plural(whole, one, many) : `${whole} ${many}`}`;
}

/**
 * A time in seconds since the epoch as ISO 8601; one no Date can hold (a record from before
 * its reader checked) is shown as such rather than thrown on.
 */
export function formatEpochSeconds(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? `(an impossible time: ${seconds} s)` : date.toISOString();
}
