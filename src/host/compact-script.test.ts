// compactScript: what it drops and keeps, and that activate.sh compacted is the same program
// as bash parses it.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { activateScript } from "./activation.js";
import { compactScript } from "./compact-script.js";

/**
 * The program bash reads from `script`, printed back by bash: the script is parsed as the body of
 * a function, which `declare -f` prints without its comments or layout (nothing is run).
 */
function parsedByBash(script: string): string {
  const definition = `parsed() {\n${script}\n}`;
  // On stdin: the script is longer than one argument may be (128 KiB).
  const bash = ["-c", 'eval "$(cat)" && declare -f parsed'];
  const r = spawnSync("bash", bash, { encoding: "utf8", input: definition });
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  return r.stdout;
}

describe("compactScript", () => {
  it("drops full-line comments (not #!), blank lines and indentation, and keeps here-documents whole", () => {
    const script = [
      "#!/bin/sh",
      "# what this is",
      "",
      "set -u",
      "  # indented",
      "\t",
      'echo "a # b" # trailing',
      "cat <<'EOF'",
      "# kept: data",
      "",
      "EOF",
      "\tcat <<-END",
      "\t# kept too",
      "\tEND",
      "# dropped again",
      "exit 0",
      "",
    ].join("\n");
    expect(compactScript(script)).toBe(
      [
        "#!/bin/sh",
        "set -u",
        'echo "a # b" # trailing',
        "cat <<'EOF'",
        "# kept: data",
        "",
        "EOF",
        "cat <<-END",
        "\t# kept too",
        "\tEND",
        "exit 0",
      ].join("\n"),
    );
  });

  it("leaves activate.sh the same program, as bash parses it", () => {
    const script = activateScript();
    expect(parsedByBash(compactScript(script))).toBe(parsedByBash(script));
  });

  it("that check would catch a comment-like line inside a quoted string", () => {
    const script = "x='first\n# inside the string\n'\nprintf '%s' \"$x\"\n";
    expect(compactScript(script)).not.toContain("inside");
    expect(parsedByBash(compactScript(script))).not.toBe(parsedByBash(script));
  });

  it("and an indented line inside a quoted string", () => {
    const script = "x='first\n    second'\nprintf '%s' \"$x\"\n";
    expect(parsedByBash(compactScript(script))).not.toBe(parsedByBash(script));
  });
});
