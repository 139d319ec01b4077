// One word for a POSIX shell: single quotes, with each single quote written as '\''.
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/** `word` as a person types it: as it is when a shell takes it so, else shellQuote'd. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : shellQuote(word);
}

/**
 * ` --FLAG VALUE` for a printed command, the value as a person types it; nothing when no value
 * was given (a next command then finds what this one found by default).
 */
export function flagWord(flag: string, value: string | undefined): string {
  return value === undefined ? "" : ` --${flag} ${shellWord(value)}`;
}
