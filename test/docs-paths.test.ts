// docs/architecture.md is a map of the code: every path it names (`src/deploy/deploy.ts`, or
// `deploy/deploy.ts` inside src/, `test/…`, `bench/…`) must exist, so the map cannot point at
// files that were moved or removed.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const DOC = "docs/architecture.md";

const topLevel = new Set(readdirSync(ROOT));
const srcFolders = new Set(
  readdirSync(join(ROOT, "src"), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name),
);

/** A code span that is a plain relative path (no placeholders such as `<host>` or `…`). */
const PATH = /^[\w.@-]+(?:\/[\w.@-]+)*\/?$/;

/**
 * The repository paths a Markdown text names in code spans, each resolved from the repository's
 * root: a path whose first folder is a top-level one as it is, one whose first folder is a src/
 * folder under src/. Other spans (store keys, URLs, commands) are not paths of the repository.
 */
function namedPaths(text: string): { named: string; resolved: string }[] {
  const found: { named: string; resolved: string }[] = [];
  for (const match of text.matchAll(/`([^`\n]+)`/g)) {
    const named = match[1] ?? "";
    if (!named.includes("/") || !PATH.test(named)) continue;
    const first = named.split("/")[0] ?? "";
    if (topLevel.has(first)) found.push({ named, resolved: named });
    else if (srcFolders.has(first)) found.push({ named, resolved: `src/${named}` });
  }
  return found;
}

describe("docs/architecture.md", () => {
  const text = readFileSync(join(ROOT, DOC), "utf8");
  const paths = namedPaths(text);

  it("names paths of the repository (the check is not empty)", () => {
    expect(paths.filter((p) => p.named.startsWith("src/")).length).toBeGreaterThan(50);
  });

  it("every path it names exists", () => {
    const missing = paths.filter((p) => !existsSync(join(ROOT, p.resolved))).map((p) => p.named);
    expect([...new Set(missing)]).toEqual([]);
  });

  it("a path that does not exist is caught, in either form", () => {
    const bad = namedPaths(
      "`src/deploy/no-such-file.ts`, `deploy/gone.ts`, `status/hosts/<host>.json`",
    );
    expect(bad.map((p) => p.resolved)).toEqual([
      "src/deploy/no-such-file.ts",
      "src/deploy/gone.ts",
    ]);
    expect(bad.filter((p) => !existsSync(join(ROOT, p.resolved)))).toHaveLength(2);
  });
});
