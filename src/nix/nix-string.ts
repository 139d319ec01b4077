// A Nix string literal for any text: what nixship puts into the Nix it writes or evaluates (a
// flake reference, a directory, a fleet's values) is data, never code, whatever it holds.

/** `"…"` with `"`, `\`, `${` and line breaks escaped, as Nix's lexer reads them back. */
export function nixString(text: string): string {
  const escaped = text
    .replaceAll("\\", "\\\\")
    .replaceAll('"', '\\"')
    .replaceAll("${", "\\${")
    .replaceAll("\n", "\\n")
    .replaceAll("\r", "\\r")
    .replaceAll("\t", "\\t");
  return `"${escaped}"`;
}
