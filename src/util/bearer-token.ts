// HTTP token auth for nixship's servers (`cache serve`, `dashboard`) and its clients
// (Prometheus): the token comes as `Authorization: Bearer TOKEN`, or as the password of Basic
// auth (what Nix's netrc sends), and is compared in constant time. A token file is read one way:
// one line of the characters a bearer token may hold, anything else refused, naming where it
// came from and never its text.
import { timingSafeEqual } from "node:crypto";
import { InputError } from "../errors.js";

/** Whether an Authorization header carries `token`. */
export function carriesToken(authorization: string | undefined, token: string): boolean {
  const header = authorization ?? "";
  let offered = "";
  if (header.startsWith("Bearer ")) offered = header.slice(7);
  else if (header.startsWith("Basic ")) {
    const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
    // user-pass is `user ":" password` (RFC 7617): without the colon there is no password.
    const colon = decoded.indexOf(":");
    if (colon >= 0) offered = decoded.slice(colon + 1);
  }
  const a = Buffer.from(offered);
  const b = Buffer.from(token);
  // Lengths differ: compare the token with itself, so the time taken does not say how long it is.
  return timingSafeEqual(a.length === b.length ? a : b, b) && a.length === b.length;
}

/**
 * The WWW-Authenticate headers a 401 sends, one challenge each, Basic first: a browser takes the
 * first scheme it knows of the first header it reads, and one header naming Bearer first left
 * Chromium with none (no prompt, and a 401 whatever it was given).
 */
export const TOKEN_CHALLENGES: readonly string[] = [
  'Basic realm="nixship", charset="UTF-8"',
  'Bearer realm="nixship"',
];

/**
 * What a token may hold: visible ASCII, which an HTTP header carries as it is (a bearer token
 * nixship sends Prometheus) and a netrc gives Nix as a Basic password (a password generator's
 * `!#$&*@` included).
 */
const TOKEN = /^[\x21-\x7e]+$/;

/**
 * The token `text` holds. `source` names it (`--token-file FILE`); `hint` says how to write a
 * good one. InputError token-empty, or bad-token for more than one line or a character no
 * token has.
 */
export function tokenIn(text: string, source: string, hint: string): string {
  const token = text.trim();
  if (token === "") throw new InputError("token-empty", `${source} is empty`, { hint });
  if (!TOKEN.test(token)) {
    const lines = token.split("\n").length;
    const what =
      lines > 1
        ? `holds ${lines} lines`
        : "holds a character a token cannot (a space, a control character or a non-ASCII one)";
    throw new InputError("bad-token", `${source} ${what}: it must hold one token`, { hint });
  }
  return token;
}
