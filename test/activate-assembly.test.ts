// src/host/activate.sh is assembled from src/host/activate/ (parts.json's order) by
// scripts/assemble-activate.mjs: the committed script is that assembly, and the generator refuses
// a manifest and a folder that disagree, naming the fix.
import { spawnSync } from "node:child_process";
import {
  appendFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const ROOT = new URL("../", import.meta.url).pathname;
const GENERATOR = join(ROOT, "scripts/assemble-activate.mjs");
const PARTS = "src/host/activate";
const SCRIPT = "src/host/activate.sh";

/** Runs the generator (on checkout `root`), bounded to 30 s. */
function generate(args: string[], root = ROOT): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, [GENERATOR, ...args, "--root", root], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: run.status, stderr: run.stderr };
}

interface Manifest {
  parts: { file: string; purpose: string }[];
}

function manifestOf(root: string): Manifest {
  return JSON.parse(readFileSync(join(root, PARTS, "parts.json"), "utf8")) as Manifest;
}

const copies: string[] = [];
afterEach(() => {
  for (const dir of copies.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A copy of the script and its parts, for the generator to refuse or rewrite. */
function copyOfCheckout(): string {
  const dir = mkdtempSync(join(tmpdir(), "nixship-assembly-"));
  copies.push(dir);
  mkdirSync(join(dir, "src/host"), { recursive: true });
  cpSync(join(ROOT, PARTS), join(dir, PARTS), { recursive: true });
  cpSync(join(ROOT, SCRIPT), join(dir, SCRIPT));
  return dir;
}

describe("activate.sh assembly", () => {
  it("src/host/activate.sh is the assembly of src/host/activate/'s parts", () => {
    const run = generate(["--check"]);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
  });

  it("says on its second and third lines, after the shebang, that it is generated and from what", () => {
    // The split itself changed no byte: the commit that made it checked the script's sha256
    // against main's (55b906d); this note is the one change since.
    const lines = readFileSync(join(ROOT, SCRIPT), "utf8").split("\n");
    expect(lines[0]).toBe("#!/bin/sh");
    expect(lines[1]).toBe(
      "# Generated from src/host/activate/ (parts.json) by scripts/assemble-activate.mjs: do not edit",
    );
    expect(lines[2]).toBe(
      "# this file by hand; edit its parts, then run `npm run assemble:activate`.",
    );
    const header = readFileSync(join(ROOT, PARTS, "00-header.sh"), "utf8");
    expect(header.startsWith("#!/bin/sh\n# nixship's activation contract")).toBe(true);
  });

  it("every part is in the manifest, every entry exists, and each says what it holds", () => {
    const { parts } = manifestOf(ROOT);
    const listed = parts.map((part) => part.file);
    const present = readdirSync(join(ROOT, PARTS)).filter((name) => name.endsWith(".sh"));
    expect([...listed].sort()).toEqual([...present].sort());
    expect(new Set(listed).size).toBe(listed.length);
    for (const part of parts) expect(part.purpose.trim(), part.file).not.toBe("");
  });

  it("parses as sh", () => {
    const run = spawnSync("sh", ["-n", join(ROOT, SCRIPT)], { encoding: "utf8", timeout: 30_000 });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
  });

  it("--check fails naming the fix when the script was edited by hand, and assembling puts it right", () => {
    const dir = copyOfCheckout();
    appendFileSync(join(dir, SCRIPT), "echo edited by hand\n");
    const check = generate(["--check"], dir);
    expect(check.status).toBe(1);
    expect(check.stderr).toContain(`${SCRIPT} differs from the assembly of ${PARTS}/`);
    expect(check.stderr).toContain("npm run assemble:activate");
    expect(generate([], dir).status).toBe(0);
    expect(readFileSync(join(dir, SCRIPT))).toEqual(readFileSync(join(ROOT, SCRIPT)));
    expect(generate(["--check"], dir).status).toBe(0);
  });

  it("an edited part changes the assembly: --check fails until it is assembled again", () => {
    const dir = copyOfCheckout();
    const last = manifestOf(dir).parts.at(-1)?.file ?? "";
    appendFileSync(join(dir, PARTS, last), "# a new last line\n");
    expect(generate(["--check"], dir).status).toBe(1);
    expect(generate([], dir).status).toBe(0);
    expect(readFileSync(join(dir, SCRIPT), "utf8").endsWith("esac\n# a new last line\n")).toBe(
      true,
    );
    expect(generate(["--check"], dir).status).toBe(0);
  });

  it("refuses a part missing from the manifest, naming it and the fix", () => {
    const dir = copyOfCheckout();
    writeFileSync(join(dir, PARTS, "45-verb-new.sh"), "cmd_new() { :; }\n");
    const run = generate(["--check"], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${PARTS}/45-verb-new.sh is not in ${PARTS}/parts.json`);
    expect(run.stderr).toContain("add it where it belongs");
  });

  it("refuses a manifest entry with no file, naming it and the fix", () => {
    const dir = copyOfCheckout();
    const manifest = manifestOf(dir);
    manifest.parts.splice(1, 0, { file: "01-gone.sh", purpose: "nothing" });
    writeFileSync(join(dir, PARTS, "parts.json"), JSON.stringify(manifest));
    const run = generate([], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${PARTS}/parts.json lists 01-gone.sh, which is not in ${PARTS}`);
    expect(run.stderr).toContain("create it, or remove its entry");
    // Nothing was written.
    expect(readFileSync(join(dir, SCRIPT))).toEqual(readFileSync(join(ROOT, SCRIPT)));
  });

  it("refuses a first part that does not start with the shebang", () => {
    const dir = copyOfCheckout();
    const header = join(dir, PARTS, "00-header.sh");
    writeFileSync(header, readFileSync(header, "utf8").replace("#!/bin/sh\n", ""));
    const run = generate(["--check"], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(
      `${PARTS}/00-header.sh: the first part must start with the shebang`,
    );
  });

  it("refuses a part without a final newline, which would join two lines", () => {
    const dir = copyOfCheckout();
    writeFileSync(join(dir, PARTS, "90-dispatch.sh"), "esac");
    const run = generate(["--check"], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${PARTS}/90-dispatch.sh: must end with a newline`);
  });
});
