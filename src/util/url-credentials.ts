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
 * `text` (a URL as typed) to quote in a message, or to key a store by: as it is when it cannot
 * hold a credential. Else without its user and password (whatever `/`, `@` or `:` they hold:
 * sourceReference's reading) and without a query that names a credential; a query holding an
 * `@`, also percent-encoded (a store URL's endpoint is a URL too, or a password's `?` put its
 * rest there), leaves only what identifies the source. What cannot be read safely (a template's
 * `{address}` before its user) is its scheme alone.
 */
export function shownUrl(text: string): string {
  const at = text.indexOf("?");
  const base = at < 0 ? text : text.slice(0, at);
  const query = at < 0 ? undefined : text.slice(at + 1);
  const baseDecoded = decoded(base);
  const queryDecoded = query === undefined ? "" : decoded(query);
  const namesCredential =
    query !== undefined &&
    [...new URLSearchParams(query).keys()].some((name) => CREDENTIAL_PARAMETER.test(name));
  if (baseDecoded === undefined || queryDecoded === undefined || queryDecoded.includes("@")) {
    return identifying(text);
  }
  const shownBase = baseDecoded.includes("@") ? identifying(base) : base;
  return query === undefined || namesCredential ? shownBase : `${shownBase}?${query}`;
}

/** `text` percent-decoded, or undefined when its escapes are malformed. */
function decoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** What identifies a URL's source (sourceReference), or its scheme alone when that is unreadable. */
function identifying(text: string): string {
  const shown = sourceReference(text);
  if (shown !== UNREADABLE_REFERENCE) return shown;
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1];
  return scheme === undefined ? shown : `${scheme}://…`;
}
