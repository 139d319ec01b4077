// The dashboard's token: long enough that guessing it is hopeless, with an error that names
// where it came from and how to make a good one. The bucket of requests without it is apart
// (limits.ts), so guessing cannot spend the real user's budget either.
import { InputError } from "../errors.js";
import { tokenIn } from "../util/bearer-token.js";

/** The fewest characters a token may have. */
export const MIN_TOKEN_LENGTH = 16;

/** How to make a token file (`file`: where it goes). */
export function tokenRecipe(file: string): string {
  return `make one with: (umask 077; head -c 32 /dev/urandom | base64 > ${file})`;
}

/**
 * The token as read from `source` (`--token-file FILE`; surrounding whitespace dropped);
 * InputError token-empty or token-short when it is not long enough, its hint saying how to make
 * `file`. The token itself is never shown.
 */
export function checkToken(token: string, source: string, file = "FILE"): string {
  const trimmed = tokenIn(token, source, tokenRecipe(file));
  if (trimmed.length < MIN_TOKEN_LENGTH) {
    throw new InputError(
      "token-short",
      `${source} holds a token of ${trimmed.length} characters; the dashboard needs at least ${MIN_TOKEN_LENGTH}, so that it cannot be guessed`,
      { hint: tokenRecipe(file) },
    );
  }
  return trimmed;
}
