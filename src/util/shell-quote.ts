// One word for a POSIX shell: single quotes, with each single quote written as '\''.
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}
