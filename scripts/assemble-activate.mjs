#!/usr/bin/env node
// Assembles activate.sh, the one script that runs on hosts, from its parts in src/host/activate/,
// concatenated in the order of src/host/activate/parts.json: a step of `npm run build`, after the
// compile, which writes it into the build (dist/host/activate.sh); no copy is kept in git. Each
// @NAME@ of a part becomes the value of NAME in the compiled dist/host/script-constants.js (the
// values the deployer shares with the script, e.g. the delta caps). No dependencies.
//
//   node scripts/assemble-activate.mjs [--root DIR] [--out FILE] [--part FILE]
//
// It writes FILE (default: dist/host/activate.sh of the checkout assembled) only when it changes,
// so that its mtime says when it did. --root DIR assembles the parts of another checkout (the
// tests use a copy; the constants stay this checkout's). --part FILE writes that one part alone,
// its constants in place (for tests that source a part). Exit 2: the parts, the manifest or the
// constants are wrong (named, with the fix), and nothing is written.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const PARTS_DIR = "src/host/activate";
const MANIFEST = `${PARTS_DIR}/parts.json`;
// Where the build puts the script, beside the compiled host/ modules that read it.
const SCRIPT = "dist/host/activate.sh";
// The compiled module whose SCRIPT_CONSTANTS the parts' @NAME@ take (src/host/script-constants.ts).
const CONSTANTS = "dist/host/script-constants.js";
// A constant's place in a part.
const PLACE = /@([A-Z][A-Z0-9_]*)@/g;
// A part's name: a plain file in PARTS_DIR, never a path.
const PART_NAME = /^[0-9a-z][0-9a-z-]*\.sh$/;
// Two lines of the assembled script, after its first (the shebang): where it comes from.
const NOTE =
  "# Generated from src/host/activate/ (parts.json) by scripts/assemble-activate.mjs at build: do\n" +
  "# not edit this file; edit its parts, then run `npm run build` (or `npm run build:host`).\n";
// The largest part taken (the whole script is about 100 kB).
const MAX_PART = 1024 * 1024;

class PartsError extends Error {}

/** The manifest's parts, in order, checked against the files of PARTS_DIR. */
function readManifest(root) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(root, MANIFEST), "utf8"));
  } catch (error) {
    throw new PartsError(`${MANIFEST}: cannot be read as JSON (${error.message})`);
  }
  const parts = manifest?.parts;
  if (!Array.isArray(parts) || parts.length === 0) {
    throw new PartsError(`${MANIFEST}: expected {"parts": [{"file": NAME, "purpose": TEXT}, ...]}`);
  }
  const files = [];
  parts.forEach((part, index) => {
    const where = `${MANIFEST}: parts[${index}]`;
    if (typeof part?.file !== "string" || !PART_NAME.test(part.file)) {
      throw new PartsError(
        `${where}: "file" must name a .sh file in ${PARTS_DIR} (e.g. 40-verb-activate.sh)`,
      );
    }
    if (typeof part.purpose !== "string" || part.purpose.trim() === "") {
      throw new PartsError(
        `${where} (${part.file}): "purpose" must say in a line what the part holds`,
      );
    }
    if (files.includes(part.file)) {
      throw new PartsError(
        `${where}: ${part.file} is listed twice: keep the one entry where it belongs`,
      );
    }
    files.push(part.file);
  });
  const present = readdirSync(join(root, PARTS_DIR)).filter((name) => name.endsWith(".sh"));
  for (const file of files) {
    if (!present.includes(file)) {
      throw new PartsError(
        `${MANIFEST} lists ${file}, which is not in ${PARTS_DIR}: create it, or remove its entry`,
      );
    }
  }
  for (const file of present) {
    if (!files.includes(file)) {
      throw new PartsError(
        `${PARTS_DIR}/${file} is not in ${MANIFEST}: add it where it belongs in the script, with its purpose, or remove it`,
      );
    }
  }
  return files;
}

/** The values of the parts' @NAME@, from the compiled constants of the checkout at `home`. */
async function readConstants(home) {
  const file = join(home, CONSTANTS);
  let module;
  try {
    module = await import(pathToFileURL(file).href);
  } catch (error) {
    throw new PartsError(
      `cannot load ${file} (${error.message}): compile first (\`npm run build\` does, then assembles)`,
    );
  }
  const constants = module.SCRIPT_CONSTANTS;
  if (constants === null || typeof constants !== "object") {
    throw new PartsError(`${file}: exports no SCRIPT_CONSTANTS object`);
  }
  for (const [name, value] of Object.entries(constants)) {
    // Written into the script unquoted: whole numbers only, never text sh would read as code.
    if (!/^[A-Z][A-Z0-9_]*$/.test(name) || !Number.isSafeInteger(value) || value < 0) {
      throw new PartsError(
        `${file}: SCRIPT_CONSTANTS.${name} must be a whole number, not ${value}`,
      );
    }
  }
  return constants;
}

/** Part `file`'s text with its @NAME@ replaced; `seen` collects the names it uses. */
function substitute(file, text, constants, seen) {
  return text.replace(PLACE, (_, name) => {
    if (!Object.hasOwn(constants, name)) {
      throw new PartsError(
        `${PARTS_DIR}/${file}: @${name}@ is no constant of ${CONSTANTS}: add it to src/host/script-constants.ts, or write the value`,
      );
    }
    seen.add(name);
    return String(constants[name]);
  });
}

/** Part `file` of `root`, checked, with its constants in place. */
function readPart(root, file, constants, seen) {
  const text = readFileSync(join(root, PARTS_DIR, file), "utf8");
  if (text.length > MAX_PART) {
    throw new PartsError(`${PARTS_DIR}/${file}: larger than ${MAX_PART} bytes`);
  }
  if (!text.endsWith("\n")) {
    throw new PartsError(
      `${PARTS_DIR}/${file}: must end with a newline, or its last line joins the next part's first`,
    );
  }
  return substitute(file, text, constants, seen);
}

/** activate.sh as its parts make it, with the note that it is generated. */
function assemble(root, constants) {
  const files = readManifest(root);
  const seen = new Set();
  const script = files.map((file) => readPart(root, file, constants, seen)).join("");
  for (const name of Object.keys(constants)) {
    if (!seen.has(name)) {
      throw new PartsError(
        `SCRIPT_CONSTANTS.${name} (src/host/script-constants.ts) is in no part: write @${name}@ where the script takes it, or remove it`,
      );
    }
  }
  // The note goes after the shebang, which must stay the first line.
  if (!script.startsWith("#!")) {
    throw new PartsError(`${PARTS_DIR}/${files[0]}: the first part must start with the shebang`);
  }
  const first = script.indexOf("\n") + 1;
  return script.slice(0, first) + NOTE + script.slice(first);
}

async function main(args) {
  const home = resolve(dirname(fileURLToPath(import.meta.url)), "..");
  let root = home;
  let out = null;
  let part = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--root" && i + 1 < args.length) root = resolve(args[++i]);
    else if (args[i] === "--out" && i + 1 < args.length) out = resolve(args[++i]);
    else if (args[i] === "--part" && i + 1 < args.length) part = args[++i];
    else {
      process.stderr.write(
        `assemble-activate: unknown argument '${args[i]}' (known: --root DIR, --out FILE, --part FILE)\n`,
      );
      return 2;
    }
  }
  if (part !== null && out === null) {
    process.stderr.write("assemble-activate: --part FILE needs --out FILE\n");
    return 2;
  }
  out ??= join(root, SCRIPT);
  let script;
  try {
    const constants = await readConstants(home);
    if (part === null) script = assemble(root, constants);
    else if (!readManifest(root).includes(part)) {
      throw new PartsError(`--part ${part}: not a part of ${MANIFEST}`);
    } else script = readPart(root, part, constants, new Set());
  } catch (error) {
    if (!(error instanceof PartsError)) throw error;
    process.stderr.write(`assemble-activate: ${error.message}\n`);
    return 2;
  }
  let current = null;
  try {
    current = readFileSync(out, "utf8");
  } catch {
    // None yet: written below.
  }
  if (current === script) return 0;
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, script);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
