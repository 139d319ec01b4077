// Reads a fleet file from disk: the one place in fleet/ that does I/O.
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { InputError } from "../errors.js";
import type { Fleet } from "./fleet.js";
import { parseFleet, resolveFleetPaths } from "./fleet-file.js";

export const DEFAULT_FLEET_FILE = "nixship.json";

/** Loads and validates `path`; relative paths in it are resolved against its directory. */
export async function loadFleet(path: string): Promise<Fleet> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InputError(
      "fleet-file-unreadable",
      `cannot read the fleet file ${path}: ${code === "ENOENT" ? "no such file" : (err as Error).message}`,
      {
        cause: err,
        ...(code === "ENOENT" ? { hint: "create it, or name another fleet file" } : {}),
      },
    );
  }
  return resolveFleetPaths(parseFleet(text, path), dirname(resolve(path)));
}
