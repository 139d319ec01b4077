// The values activate.sh takes from the TypeScript it shares them with, by the names its parts
// write as @NAME@: the build (scripts/assemble-activate.mjs) puts each value there, so the
// deployer and the hosts cannot differ on them. Each has its home in the module it comes from.
import {
  DELTA_INFO_LIMIT,
  DELTA_MAX_BASES,
  DELTA_MAX_PATHS,
  DELTA_MAX_PER_NAME,
} from "../cache/delta-caps.js";

/** Whole numbers only: written into the script as they are, unquoted. */
export const SCRIPT_CONSTANTS = {
  DELTA_MAX_PATHS,
  DELTA_MAX_BASES,
  DELTA_MAX_PER_NAME,
  DELTA_INFO_LIMIT,
} as const satisfies Readonly<Record<string, number>>;
