// JSON paths as errors print them: `hosts.web1.tags[2]`, `hosts["odd key"]`.

export type JsonPath = readonly (string | number)[];

import { quoted } from "../util/text.js";

const PLAIN_KEY = /^[A-Za-z0-9_$][A-Za-z0-9_$-]*$/;
/** The longest key a path shows whole. */
const SHOWN_KEY = 80;

export function formatJsonPath(path: JsonPath): string {
  if (path.length === 0) return "(top level)";
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (PLAIN_KEY.test(segment) && segment.length <= SHOWN_KEY)
      out += out === "" ? segment : `.${segment}`;
    // Whoever wrote the document chose the key: quoted, clipped, without controls.
    else out += `[${quoted(segment, SHOWN_KEY)}]`;
  }
  return out;
}
