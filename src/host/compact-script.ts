// A shell script as it is shipped to hosts (piped to `sh -s`, embedded in the SSM document):
// without what changes nothing sh runs, its comments, blank lines and indentation.
/**
 * A shell script without its full-line comments (its `#!` line kept), blank lines and
 * indentation, which change nothing sh runs: here-document bodies are kept whole, and
 * activate.sh has no quoted string holding a blank or a comment-like line
 * (compact-script.test.ts checks it against bash).
 */
export function compactScript(script: string): string {
  const kept: string[] = [];
  let heredoc: { end: string; tabs: boolean } | undefined;
  for (const [i, line] of script.split("\n").entries()) {
    if (heredoc !== undefined) {
      kept.push(line);
      if ((heredoc.tabs ? line.replace(/^\t+/, "") : line) === heredoc.end) heredoc = undefined;
      continue;
    }
    const text = line.trim();
    if (text === "" || (text.startsWith("#") && !(i === 0 && line.startsWith("#!")))) continue;
    // Indentation changes nothing sh runs either (activate.sh has no quoted string spanning an
    // indented line: compact-script.test.ts checks it against bash).
    kept.push(line.replace(/^[ \t]+/, ""));
    const start = /<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\2/.exec(line);
    if (start) heredoc = { end: start[3] as string, tabs: start[1] === "-" };
  }
  return kept.join("\n");
}
