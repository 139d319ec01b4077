// Credentials in URLs: what counts as one (a user or password before the host, a query
// parameter named as one), and how a URL is quoted in a message without it. Fleet files' URLs
// that hosts and views carry as written must hold none (fleet/health-url.ts, fleet-file.ts);
// messages that echo a URL someone typed quote it through `shownUrl`.
import { sourceReference, UNREADABLE_REFERENCE } from "./source-reference.js";

/**
 * The last word of a name that makes it a credential (`access_token`, `client_secret`,
 * `db_password`, `X-Goog-Signature`, `X-Amz-Credential`): a setting's name ends otherwise
 * (`signature_version`, `skip_auth`, `with_credentials`, `sortKey`).
 */
const CREDENTIAL_LAST_WORDS: ReadonlySet<string> = new Set([
  "token",
  "secret",
  "password",
  "passwd",
  "passphrase",
  "pwd",
  "signature",
  "credential",
  "jwt",
  "cookie",
  "hmac",
]);
/**
 * A name that is a credential on its own, beside those: API keys, signatures, session ids,
 * auth headers' values.
 */
const CREDENTIAL_NAMES: ReadonlySet<string> = new Set([
  ...CREDENTIAL_LAST_WORDS,
  "pw",
  "pass",
  "key",
  "apikey",
  "sig",
  "auth",
  "authorization",
  "bearer",
  "credentials",
  "creds",
  "session",
  "sid",
]);
/** Before a last word "key", what makes it a secret (`secret_key`, `accessKey`, `api-key`). */
const SECRET_KEY_KINDS: ReadonlySet<string> = new Set([
  "secret",
  "private",
  "access",
  "api",
  "signing",
  "session",
  "client",
  "auth",
  "encryption",
  "master",
  "shared",
]);
/** The same, run into one lowercase word (`accesstoken`, `clientsecret`, `secretkey`). */
const CREDENTIAL_ENDING =
  /^[a-z0-9]*(?:token|secret|password|passwd|passphrase|signature|apikey|accesskey|secretkey|privatekey)$/;

/** Whether a query parameter's name says its value is a credential. */
export function namesCredential(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== "");
  const last = words.at(-1);
  if (last === undefined) return false;
  if (words.length === 1) return CREDENTIAL_NAMES.has(last) || CREDENTIAL_ENDING.test(last);
  if (CREDENTIAL_LAST_WORDS.has(last) || CREDENTIAL_ENDING.test(last)) return true;
  return last === "key" && SECRET_KEY_KINDS.has(words.at(-2) as string);
}

/**
 * The names of the parameters in a query, and in any URL a value holds (a store URL's
 * `endpoint` is a URL with a query of its own), and in the fragment: every `NAME=` in it.
 */
function queryNames(query: string): string[] {
  const text = decoded(query) ?? query;
  // A name with no value (`?token`) is a name too.
  return [...text.matchAll(/(?:^|[?&;#])([^=&?#;]+)(?=[=&;#]|$)/g)].map((m) => m[1] as string);
}

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
  const afterHost = rest.slice(beforeQuery.length);
  const named = queryNames(afterHost).find(namesCredential);
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
  // The query, and a fragment: either may name a credential (the fragment's stays in the URL).
  const at = text.search(/[?#]/);
  const base = at < 0 ? text : text.slice(0, at);
  const separator = at < 0 ? "" : text.charAt(at);
  const query = at < 0 ? undefined : text.slice(at + 1);
  const baseDecoded = decoded(base);
  const queryDecoded = query === undefined ? "" : decoded(query);
  const credential = query !== undefined && queryNames(query).some(namesCredential);
  if (baseDecoded === undefined || queryDecoded === undefined || queryDecoded.includes("@")) {
    return identifying(text);
  }
  const shownBase = baseDecoded.includes("@") ? identifying(base) : base;
  return query === undefined || credential ? shownBase : `${shownBase}${separator}${query}`;
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
