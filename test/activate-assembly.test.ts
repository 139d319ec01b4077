// activate.sh is assembled from src/host/activate/ (parts.json's order) by
// scripts/assemble-activate.mjs at build: the build's dist/host/activate.sh is that assembly, no
// copy is kept in git, and the generator refuses a manifest and a folder that disagree, naming
// the fix, and writes nothing then.
import { spawnSync } from "node:child_process";
import {
  appendFileSync,
  cpSync,
  existsSync,
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
/** Where the build puts the script. */
const BUILT = join(ROOT, "dist/host/activate.sh");

/** Runs the generator on checkout `root` with `args`, bounded to 30 s. */
function generate(args: string[], root = ROOT): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, [GENERATOR, "--root", root, ...args], {
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

/** A copy of the parts, for the generator to refuse or assemble (into OUT of the copy). */
function copyOfParts(): string {
  const dir = mkdtempSync(join(tmpdir(), "nixship-assembly-"));
  copies.push(dir);
  cpSync(join(ROOT, PARTS), join(dir, PARTS), { recursive: true });
  return dir;
}

/** The script's path in a copy. */
const OUT = "out/activate.sh";

describe("activate.sh assembly", () => {
  it("the build's dist/host/activate.sh is the assembly of src/host/activate/'s parts", () => {
    const dir = copyOfParts();
    const run = generate(["--out", join(dir, OUT)]);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(readFileSync(join(dir, OUT))).toEqual(readFileSync(BUILT));
  });

  it("is not kept in git, nor is the SSM document: both are ignored where earlier versions kept them", () => {
    const git = (args: string[]) =>
      spawnSync("git", args, { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
    const kept = [
      "src/host/activate.sh",
      "terraform/modules/ssm-document/document.json",
      "dist/host/activate.sh",
      "dist/ssm-document.json",
    ];
    const tracked = git(["ls-files", "--", ...kept]);
    expect(tracked.status, tracked.stderr).toBe(0);
    expect(tracked.stdout).toBe("");
    const ignored = git(["check-ignore", "--no-index", "--", ...kept]);
    expect(ignored.stdout.split("\n").filter(Boolean)).toEqual(kept);
  });

  it("says on its second and third lines, after the shebang, that it is generated and from what", () => {
    const lines = readFileSync(BUILT, "utf8").split("\n");
    expect(lines[0]).toBe("#!/bin/sh");
    expect(lines[1]).toBe(
      "# Generated from src/host/activate/ (parts.json) by scripts/assemble-activate.mjs at build: do",
    );
    expect(lines[2]).toBe(
      "# not edit this file; edit its parts, then run `npm run build` (or `npm run build:host`).",
    );
    const first = manifestOf(ROOT).parts[0]?.file ?? "";
    const header = readFileSync(join(ROOT, PARTS, first), "utf8");
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
    const run = spawnSync("sh", ["-n", BUILT], { encoding: "utf8", timeout: 30_000 });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
  });

  it("an edited part changes the assembly the next build writes", () => {
    const dir = copyOfParts();
    expect(generate(["--out", join(dir, OUT)], dir).status).toBe(0);
    const last = manifestOf(dir).parts.at(-1)?.file ?? "";
    appendFileSync(join(dir, PARTS, last), "# a new last line\n");
    expect(generate(["--out", join(dir, OUT)], dir).status).toBe(0);
    expect(readFileSync(join(dir, OUT), "utf8").endsWith("esac\n# a new last line\n")).toBe(true);
  });

  it("refuses a part missing from the manifest, naming it and the fix, and writes nothing", () => {
    const dir = copyOfParts();
    writeFileSync(join(dir, PARTS, "45-verb-new.sh"), "cmd_new() { :; }\n");
    const run = generate(["--out", join(dir, OUT)], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${PARTS}/45-verb-new.sh is not in ${PARTS}/parts.json`);
    expect(run.stderr).toContain("add it where it belongs");
    expect(existsSync(join(dir, OUT))).toBe(false);
  });

  it("refuses a manifest entry with no file, naming it and the fix", () => {
    const dir = copyOfParts();
    const manifest = manifestOf(dir);
    manifest.parts.splice(1, 0, { file: "01-gone.sh", purpose: "nothing" });
    writeFileSync(join(dir, PARTS, "parts.json"), JSON.stringify(manifest));
    const run = generate(["--out", join(dir, OUT)], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${PARTS}/parts.json lists 01-gone.sh, which is not in ${PARTS}`);
    expect(run.stderr).toContain("create it, or remove its entry");
    expect(existsSync(join(dir, OUT))).toBe(false);
  });

  it("refuses a part that names a constant src/host/script-constants.ts lacks", () => {
    const dir = copyOfParts();
    const last = manifestOf(dir).parts.at(-1)?.file ?? "";
    appendFileSync(join(dir, PARTS, last), "NO_SUCH_CAP=@NO_SUCH_CAP@\n");
    const run = generate(["--out", join(dir, OUT)], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(
      `${PARTS}/${last}: @NO_SUCH_CAP@ is no constant of dist/host/script-constants.js`,
    );
    expect(existsSync(join(dir, OUT))).toBe(false);
  });

  it("writes one part alone, its constants in place, with --part", () => {
    const dir = copyOfParts();
    const part = "26-deltas.sh";
    expect(readFileSync(join(dir, PARTS, part), "utf8")).toContain("=@DELTA_MAX_PATHS@");
    const run = generate(["--part", part, "--out", join(dir, OUT)], dir);
    expect(run.stderr).toBe("");
    const text = readFileSync(join(dir, OUT), "utf8");
    expect(text).not.toMatch(/@[A-Z][A-Z0-9_]*@/);
    expect(readFileSync(BUILT, "utf8")).toContain(text);
  });

  it("refuses a first part that does not start with the shebang", () => {
    const dir = copyOfParts();
    const first = manifestOf(dir).parts[0]?.file ?? "";
    const header = join(dir, PARTS, first);
    writeFileSync(header, readFileSync(header, "utf8").replace("#!/bin/sh\n", ""));
    const run = generate(["--out", join(dir, OUT)], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${PARTS}/${first}: the first part must start with the shebang`);
  });

  it("refuses a part without a final newline, which would join two lines", () => {
    const dir = copyOfParts();
    const last = manifestOf(dir).parts.at(-1)?.file ?? "";
    writeFileSync(join(dir, PARTS, last), "esac");
    const run = generate(["--out", join(dir, OUT)], dir);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${PARTS}/${last}: must end with a newline`);
  });
});
