// HTTP token auth for nixship's servers (`cache serve`, `dashboard`): the token comes as
// `Authorization: Bearer TOKEN`, or as the password of Basic auth (what Nix's netrc sends), and is
// compared in constant time.
import { timingSafeEqual } from "node:crypto";

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
