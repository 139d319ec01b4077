// One part of activate.sh as the build writes it (its constants in place), alone: sourced by a
// test to run the part's functions (definitions only) over files the test makes.
import { join } from "node:path";
import { runOk } from "../../support/cli.js";

const ROOT = new URL("../..", import.meta.url).pathname;

/** Writes the part `name` (src/host/activate/NAME) into `dir`; returns its path. */
export async function scriptPart(dir: string, name: string): Promise<string> {
  const out = join(dir, name);
  await runOk(process.execPath, [
    join(ROOT, "scripts/assemble-activate.mjs"),
    ...["--part", name, "--out", out],
  ]);
  return out;
}
