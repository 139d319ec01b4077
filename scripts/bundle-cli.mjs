#!/usr/bin/env node
// Bundles the `nixship` executable: a step of `npm run build`, after the compile, which joins
// the compiled dist/cli/executable.js and the project's modules it imports into
// dist/cli/bin.js and its chunks (dist/cli/bundle-*.js, one per command loaded on demand).
// Node loads a few files instead of some 260 modules: a command costs about 0.15 CPU-s less
// to start (docs/performance.md). Packages stay outside the bundle, loaded from node_modules.
// The compiled modules stay too: tests and benches import them, the worker threads run them,
// and the bundle reads its files where they do (dist/host/activate.sh, dist/cache/nar-worker.js:
// one level above dist/cli/, as above every compiled module).
//
//   node scripts/bundle-cli.mjs
//
// Without the bundler (rolldown not installed, or its native part missing for this platform)
// it says so and writes a dist/cli/bin.js that starts the compiled entry unbundled.
// Exit 2: the compiled entry is missing (run the compile first); nothing is written.
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI_DIR = join(ROOT, "dist/cli");
const ENTRY = join(CLI_DIR, "executable.js");
// The bundle's files: its entry (package.json's bin) and its chunks.
const BIN = "bin.js";
// The bundler's runtime helpers: bundled, as they are no dependency of nixship's.
const HELPERS = "@oxc-project/runtime/";
// dist/cli/bin.js where the bundler cannot run: the compiled entry as it is.
const UNBUNDLED =
  '#!/usr/bin/env node\n// Unbundled (scripts/bundle-cli.mjs could not load its bundler).\nimport "./executable.js";\n';
const CHUNK = /^bundle-[A-Za-z0-9_-]+\.js(\.map)?$/;

async function main() {
  if (!existsSync(ENTRY)) {
    process.stderr.write(
      `bundle-cli: ${ENTRY} is missing: run the compile first (npm run build)\n`,
    );
    return 2;
  }
  let build;
  try {
    ({ build } = await import("rolldown"));
  } catch (err) {
    // A platform or package build without the bundler (its native part is an optional npm
    // package) still gets a working executable: the compiled entry, unbundled, started the
    // same way (about 0.15 CPU-s more for each command).
    process.stderr.write(
      `bundle-cli: cannot load the bundler rolldown (${err.message.split("\n")[0]}): dist/cli/bin.js starts the unbundled CLI\n`,
    );
    for (const name of readdirSync(CLI_DIR)) {
      if (CHUNK.test(name) || name === `${BIN}.map`) rmSync(join(CLI_DIR, name));
    }
    writeFileSync(join(CLI_DIR, BIN), UNBUNDLED);
    return 0;
  }
  // Written beside the target first, then moved in: a failed bundle leaves the last one whole.
  const staging = mkdtempSync(join(ROOT, "dist/.cli-bundle-"));
  try {
    await build({
      input: { bin: ENTRY },
      platform: "node",
      // Only the project's own modules go in: anything named by package stays an import, but
      // for the bundler's own helpers (it rewrites a tagged template holding "</script>").
      external: (id) => !id.startsWith(".") && !id.startsWith("/") && !id.startsWith(HELPERS),
      logLevel: "warn",
      output: {
        dir: staging,
        format: "esm",
        entryFileNames: "[name].js",
        chunkFileNames: "bundle-[hash].js",
        sourcemap: true,
      },
    });
    for (const name of readdirSync(CLI_DIR)) {
      if (CHUNK.test(name)) rmSync(join(CLI_DIR, name));
    }
    for (const name of readdirSync(staging)) {
      if (name !== `${BIN}` && name !== `${BIN}.map` && !CHUNK.test(name)) {
        throw new Error(`the bundler wrote ${name}, which is neither ${BIN} nor a chunk`);
      }
      renameSync(join(staging, name), join(CLI_DIR, name));
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return 0;
}

process.exitCode = await main();
