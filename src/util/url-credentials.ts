// Credentials in URLs: what counts as one (a user or password before the host, a query
// parameter named as one), and how a URL is quoted in a message without it. Fleet files' URLs
// that hosts and views carry as written must hold none (fleet/health-url.ts, fleet-file.ts);
// messages that echo a URL someone typed quote it through `shownUrl`.
import { sourceReference, UNREADABLE_REFERENCE } from "./source-reference.js";

/**
 * Query parameters whose value is a credential by its name: bearer tokens, API keys,
 * passwords, and an S3 presigned URL's signature and session token.
 */
const CREDENTIAL_PARAMETER =
  /^(?:(?:access|auth|bearer|id|refresh|private|session|api|client)[_-]?token|token|api[_-]?key|apikey|key|secret|client[_-]?secret|password|passwd|pwd|pass|auth|authorization|signature|sig|x-amz-(?:signature|security-token|credential))$/i;

/**
 * What in `url` is a credential, said without it: a user or password before its host, or a
 * query parameter named as one; undefined when it holds neither. A URL that does not parse is
 * judged by its text: an `@` before the query is taken as a user's.
 */
export function credentialsIn(url: string): string | undefined {
  const rest = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(.*)$/s.exec(url)?.[1];
  if (rest === undefined) return undefined;
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  const beforeQuery = rest.split(/[?#]/, 1)[0] ?? "";
  if (parsed === undefined ? beforeQuery.includes("@") : parsed.username || parsed.password) {
    return "a user or password before the host";
  }
  const query = parsed?.searchParams ?? new URLSearchParams(rest.split("?", 2)[1] ?? "");
  const named = [...query.keys()].find((name) => CREDENTIAL_PARAMETER.test(name));
  return named === undefined ? undefined : `the query parameter "${named}"`;
}

/**
 * `text` (a URL as typed) to quote in a message: as it is when it cannot hold a credential,
 * else only what identifies its source (sourceReference: no user or password, whatever `/`,
 * `@` or `:` it holds, and no query), or where that cannot be read (a template's `{address}`
 * for a host), its scheme alone. Any `@`, also percent-encoded (a store URL's endpoint
 * parameter is a URL too), or a parameter named as a credential, makes it suspect.
 */
export function shownUrl(text: string): string {
  let decoded: string | undefined;
  try {
    decoded = decodeURIComponent(text);
  } catch {
    decoded = undefined;
  }
  const query = new URLSearchParams(text.split("?", 2)[1] ?? "");
  const suspect =
    decoded === undefined ||
    decoded.includes("@") ||
    [...query.keys()].some((name) => CREDENTIAL_PARAMETER.test(name));
  if (!suspect) return text;
  const shown = sourceReference(text);
  if (shown !== UNREADABLE_REFERENCE) return shown;
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1];
  return scheme === undefined ? shown : `${scheme}://…`;
}
