// The one way a token file is read: one line of the characters a bearer token may hold (RFC
// 6750's b64token), surrounding whitespace dropped; anything else refused, naming where it came
// from and what is wrong, never its content (an HTTP client's error about a bad header, or a
// log of a failed comparison, would quote it).
import { InputError } from "../errors.js";

/** RFC 6750's b64token: what an Authorization: Bearer header carries. */
const TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

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
