// A store path given on the command line: `/nix/store/…` itself, or a link to one (`./result`,
// as `nix build` leaves it, and as Nix's own commands take it). The link is read, not resolved
// on this file system: a result link of another store (--store DIR) names /nix/store all the
// same.
import { readlinkSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { InputError } from "../errors.js";
import { STORE_DIR, type StorePath, storePathProblem } from "../nix/store-path.js";

/** Links followed to reach a store path (`result` → `/nix/store/…` is one). */
const MAX_LINKS = 8;

export function storePathArgument(text: string, where: string): StorePath {
  const followed = followLinks(text);
  if (followed !== text) {
    const problem = storePathProblem(followed, "its target");
    if (problem !== undefined) {
      throw new InputError("bad-store-path", `${where} '${text}' is a link: ${problem}`);
    }
    return followed as StorePath;
  }
  const problem = storePathProblem(text, where);
  if (problem === undefined) return text as StorePath;
  throw new InputError(
    "bad-store-path",
    problem,
    text.startsWith(`${STORE_DIR}/`)
      ? {}
      : {
          hint: `give a store path (${STORE_DIR}/HASH-NAME), or a link to one such as nix build's ./result`,
        },
  );
}

/** `text`, or where its links lead while it is not under the store (at most MAX_LINKS). */
function followLinks(text: string): string {
  let current = text;
  for (let hops = 0; hops < MAX_LINKS && !current.startsWith(`${STORE_DIR}/`); hops++) {
    let target: string;
    try {
      target = readlinkSync(current);
    } catch {
      break;
    }
    current = resolve(dirname(resolve(current)), target);
  }
  return current;
}
