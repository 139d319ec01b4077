// scripts/bundle-cli.mjs on a checkout of its own: it bundles the compiled entry into
// dist/cli/bin.js and its chunks, and where the bundler cannot be loaded it says so and leaves
// a bin.js that starts the entry unbundled.
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../support/cli.js";

const REPO = join(import.meta.dirname, "..");
let work: string;

/** A checkout holding the script and a compiled entry that imports a module loaded on demand. */
async function checkout(name: string, withBundler: boolean): Promise<string> {
  const root = join(work, name);
  await mkdir(join(root, "scripts"), { recursive: true });
  await mkdir(join(root, "dist/cli"), { recursive: true });
  await mkdir(join(root, "dist/host"), { recursive: true });
  await cp(join(REPO, "scripts/bundle-cli.mjs"), join(root, "scripts/bundle-cli.mjs"));
  await writeFile(join(root, "package.json"), '{ "type": "module" }\n');
  await writeFile(
    join(root, "dist/cli/executable.js"),
    '#!/usr/bin/env node\nimport { said } from "../host/said.js";\nconst { more } = await import("./more.js");\nconsole.log(said, more);\n',
  );
  await writeFile(join(root, "dist/host/said.js"), 'export const said = "bundled entry";\n');
  await writeFile(join(root, "dist/cli/more.js"), 'export const more = "and its chunk";\n');
  if (withBundler) await symlink(join(REPO, "node_modules"), join(root, "node_modules"));
  return root;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-bundle-cli-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("scripts/bundle-cli.mjs", () => {
  it("joins the entry and what it imports into bin.js and its chunks, which run", async () => {
    const root = await checkout("with", true);
    const made = await run(process.execPath, [join(root, "scripts/bundle-cli.mjs")]);
    expect(made.code, made.stderr).toBe(0);
    const files = await readdir(join(root, "dist/cli"));
    expect(files.filter((f) => /^bundle-.*\.js$/.test(f))).toHaveLength(1);
    const bin = await readFile(join(root, "dist/cli/bin.js"), "utf8");
    // The entry's code is inside, not imported (the bundler names its source in a comment).
    expect(bin).not.toMatch(/(import|from) "\.\/executable\.js"/);
    expect(bin).toContain("bundled entry");
    const ran = await run(process.execPath, [join(root, "dist/cli/bin.js")]);
    expect(ran.stdout).toBe("bundled entry and its chunk\n");
    // Again: the chunks of the last bundle are replaced, not left beside the new ones.
    await writeFile(join(root, "dist/cli/more.js"), 'export const more = "and a new chunk";\n');
    expect((await run(process.execPath, [join(root, "scripts/bundle-cli.mjs")])).code).toBe(0);
    const again = await readdir(join(root, "dist/cli"));
    expect(again.filter((f) => /^bundle-.*\.js$/.test(f))).toHaveLength(1);
    expect((await run(process.execPath, [join(root, "dist/cli/bin.js")])).stdout).toBe(
      "bundled entry and a new chunk\n",
    );
  });

  it("without its bundler, says so and leaves a bin.js that starts the entry unbundled", async () => {
    const root = await checkout("without", false);
    const made = await run(process.execPath, [join(root, "scripts/bundle-cli.mjs")]);
    expect(made.code).toBe(0);
    expect(made.stderr).toMatch(
      /^bundle-cli: cannot load the bundler rolldown \(.+\): dist\/cli\/bin\.js starts the unbundled CLI\n$/,
    );
    const ran = await run(process.execPath, [join(root, "dist/cli/bin.js")]);
    expect(ran.stdout).toBe("bundled entry and its chunk\n");
  });

  it("refuses to run before the compile, writing nothing", async () => {
    const root = await checkout("uncompiled", true);
    await rm(join(root, "dist/cli/executable.js"));
    const made = await run(process.execPath, [join(root, "scripts/bundle-cli.mjs")]);
    expect(made.code).toBe(2);
    expect(made.stderr).toMatch(/executable\.js is missing: run the compile first/);
    expect(await readdir(join(root, "dist/cli"))).toEqual(["more.js"]);
  });
});
