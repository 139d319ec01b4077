// The import order docs/architecture.md states ("Imports point down"), checked on the sources:
// a module imports only from its own folder and from folders below it. Tests may reach across.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = new URL("../src/", import.meta.url).pathname;

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

  it("the order is the one docs/architecture.md states", () => {
    const doc = readFileSync(new URL("../docs/architecture.md", import.meta.url), "utf8");
    const line = /Imports point down: `([^`]+)`/.exec(doc.replace(/\n/g, " "))?.[1] ?? "";
    const stated = line.split("→").map((s) => s.trim());
    expect(stated).toEqual([...LAYERS.filter((l) => l !== "util"), "errors"]);
  });
});
