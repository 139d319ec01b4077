// Seconds as the views and JSON show them: to a tenth.

/** `seconds` rounded to a tenth. */
export function tenths(seconds: number): number {
  return Math.round(seconds * 10) / 10;
}
