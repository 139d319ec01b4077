// Reads a fleet file from disk: the one place in fleet/ that does I/O.
import { dirname, resolve } from "node:path";
import { InputError } from "../errors.js";
import { readFileBounded } from "../util/bounded-file.js";
import { errnoWords } from "../util/errno-words.js";
import type { Fleet } from "./fleet.js";
import { parseFleet, resolveFleetPaths } from "./fleet-file.js";

export const DEFAULT_FLEET_FILE = "nixship.json";

/**
 * The most JSON a fleet may be (a fleet file, or what a flake's fleet evaluates to): far more
 * than any fleet's settings take.
 */
export const MAX_FLEET_JSON = 64 * 1024 * 1024;

/** Loads and validates `path`; relative paths in it are resolved against its directory. */
export async function loadFleet(path: string): Promise<Fleet> {
  const tooLarge = (size: number) =>
    new InputError(
      "fleet-too-large",
      `the fleet file ${path} holds ${size} bytes or more, over the ${MAX_FLEET_JSON / 1024 / 1024} MiB a fleet file may: not a fleet file`,
    );
  let bytes: Buffer | undefined;
  try {
    bytes = await readFileBounded(path, MAX_FLEET_JSON, tooLarge);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(
      "fleet-file-unreadable",
      `cannot read the fleet file ${path}: ${errnoWords(err)}`,
      {
        cause: err,
      },
    );
  }
  if (bytes === undefined) {
    throw new InputError(
      "fleet-file-unreadable",
      `cannot read the fleet file ${path}: no such file`,
      {
        hint: "create it ('nixship init' writes a fleet for a flake's configurations), or name the fleet with --fleet (a file, or a flake's output such as .#nixship) or $NIXSHIP_FLEET",
      },
    );
  }
  return resolveFleetPaths(parseFleet(bytes.toString("utf8"), path), dirname(resolve(path)));
}
