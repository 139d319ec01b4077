// The import order docs/architecture.md states ("Imports point down"), checked on the sources:
// a module imports only from its own folder and from folders below it, and no files import each
// other in a circle. Tests may reach across; benchmarks share code with tests only through
// support/, never by importing test/.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = new URL("../src/", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;

/** Top to bottom; each folder may import the folders after it. */
const LAYERS = [
  "cli",
  "dashboard",
  "ui",
  "views",
  "doctor",
  "lab",
  "deploy",
  "agent",
  "delivery",
  "channel",
  "host",
  "secrets",
  "status",
  "release",
  "fleet",
  "cache",
  "metrics",
  "store",
  "age",
  "nix",
  "util",
] as const;

const folders = readdirSync(SRC, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);

function sourcesOf(folder: string): string[] {
  return readdirSync(join(SRC, folder), { recursive: true, encoding: "utf8" }).filter(
    (name) => name.endsWith(".ts") && !name.endsWith(".test.ts"),
  );
}

/** The src folders a file imports from (relative imports that leave its folder). */
function importedFolders(folder: string, file: string): string[] {
  const text = readFileSync(join(SRC, folder, file), "utf8");
  const depth = file.split("/").length - 1;
  const up = `${"../".repeat(depth + 1)}`;
  const found = new Set<string>();
  for (const match of text.matchAll(/(?:from|import)\s*\(?"([^"]+)"/g)) {
    const spec = match[1] ?? "";
    if (!spec.startsWith(up)) continue;
    const rest = spec.slice(up.length);
    const top = rest.split("/")[0] ?? "";
    if (rest.includes("/")) found.add(top);
  }
  return [...found];
}

/** Every source file's relative imports (type-only ones too), as paths from SRC. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const folder of folders) {
    for (const file of sourcesOf(folder)) {
      const from = join(folder, file);
      const text = readFileSync(join(SRC, from), "utf8");
      const targets: string[] = [];
      for (const match of text.matchAll(/(?:from|import)\s*\(?"(\.[^"]+)\.js"/g)) {
        targets.push(join(dirname(from), `${match[1] ?? ""}.ts`));
      }
      graph.set(from, targets);
    }
  }
  return graph;
}

/** The circles of files in `graph` (Tarjan's strongly connected components of two or more). */
function circles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      for (;;) {
        const w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
        if (w === v) break;
      }
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

/**
 * The relative imports of the .ts files in `folder` (from the repository's root) that resolve
 * into `forbidden`, as "file → import".
 */
function importsInto(folder: string, forbidden: string): string[] {
  const found: string[] = [];
  const files = readdirSync(join(ROOT, folder), { recursive: true, encoding: "utf8" }).filter(
    (name) => name.endsWith(".ts"),
  );
  for (const file of files) {
    const text = readFileSync(join(ROOT, folder, file), "utf8");
    found.push(...importsOf(text, join(folder, file)).filter((t) => t.startsWith(`${forbidden}/`)));
  }
  return found;
}

/** Where each relative import (static, dynamic or type-only) of `text`, at `from`, resolves. */
function importsOf(text: string, from: string): string[] {
  const targets: string[] = [];
  for (const match of text.matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)) {
    targets.push(join(dirname(from), match[1] ?? ""));
  }
  return targets;
}

describe("layers", () => {
  it("every src folder has a place in the order", () => {
    expect(folders.filter((f) => !(LAYERS as readonly string[]).includes(f))).toEqual([]);
  });

  it("imports point down", () => {
    const upward: string[] = [];
    for (const folder of folders) {
      const rank = LAYERS.indexOf(folder as (typeof LAYERS)[number]);
      for (const file of sourcesOf(folder)) {
        for (const target of importedFolders(folder, file)) {
          const targetRank = LAYERS.indexOf(target as (typeof LAYERS)[number]);
          if (target !== folder && targetRank <= rank)
            upward.push(`${folder}/${file} → ${target}/`);
        }
      }
    }
    expect(upward).toEqual([]);
  });

  it("no circle of files: imports within a folder point one way too", () => {
    expect(circles(importGraph())).toEqual([]);
  });

  it("the circle finder finds a circle", () => {
    const graph = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts"]],
      ["d.ts", ["a.ts"]],
    ]);
    expect(circles(graph)).toEqual([["a.ts", "b.ts", "c.ts"]]);
  });

  it("bench/ and support/ import nothing of test/: what they share with tests is in support/", () => {
    expect([...importsInto("bench", "test"), ...importsInto("support", "test")]).toEqual([]);
  });

  it("the import finder resolves imports into test/", () => {
    const text =
      'import { a } from "../test/support/x.js";\nimport type { B } from "../support/y.js";';
    expect(importsOf(text, "bench/z.ts").filter((t) => t.startsWith("test/"))).toEqual([
      "test/support/x.js",
    ]);
  });

  it("the order is the one docs/architecture.md states", () => {
    const doc = readFileSync(new URL("../docs/architecture.md", import.meta.url), "utf8");
    const line = /Imports point down: `([^`]+)`/.exec(doc.replace(/\n/g, " "))?.[1] ?? "";
    const stated = line.split("→").map((s) => s.trim());
    expect(stated).toEqual([...LAYERS.filter((l) => l !== "util"), "errors"]);
  });
});
