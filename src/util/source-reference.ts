// A flake reference or URL reduced to what identifies the source, for every writer and reader
// of one: no userinfo, no query parameter but Nix's own flake attributes, so no credential it
// carries is stored, shown or logged. Free text quoting references: `withoutSourceSecrets`.
import { withoutControls } from "./text.js";

/**
 * The query parameters kept: the attributes of Nix's flake references (git, github, gitlab,
 * sourcehut, mercurial, tarball, file, path and indirect types, and the flake's `dir`). Each
 * names which tree it is; none is a credential. Anything else in a query (`access_token`,
 * `private_token`, an S3 presigned URL's `X-Amz-*`, a store's settings) is dropped.
 */
const KEPT_PARAMETERS: ReadonlySet<string> = new Set([
  "dir",
  "rev",
  "ref",
  "narHash",
  "lastModified",
  "revCount",
  "submodules",
  "shallow",
  "allRefs",
  "lfs",
  "exportIgnore",
  "host",
  "unpack",
  "treeHash",
]);

/**
 * Schemes whose part after `scheme:` is no authority but a path or an owner/repo (`github:o/r`):
 * Nix reads no user or password there.
 */
const OPAQUE_SCHEMES: ReadonlySet<string> = new Set([
  "path",
  "file",
  "github",
  "gitlab",
  "sourcehut",
  "flake",
]);

/** What is shown for a reference that cannot be read safely. */
export const UNREADABLE_REFERENCE = "(a source reference that cannot be shown safely)";

/** References longer than this are not read (none real comes near). */
const MAX_INPUT = 8192;

/** An installable's attribute path (`nixosConfigurations.web`, `web^out`). */
const ATTR_PATH = /^[A-Za-z0-9_.'^,*-]*$/;
/** An authority's host and port: a name, an IPv4 or a bracketed IPv6 address, no user. */
const HOST_PORT = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(?::[0-9]{0,5})?$/;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

/**
 * `reference` as what identifies it: the same scheme, host, path and attribute path, with no
 * userinfo (whatever `@` or `:` the password holds) and only the allow-listed query parameters
 * (rev, ref, narHash, dir and the like). A local path stays as it is, but for its query. Never
 * throws; what cannot be read safely becomes UNREADABLE_REFERENCE.
 */
export function sourceReference(reference: string): string {
  // Newlines and tabs too: a reference is one line.
  const text = withoutControls(reference)
    .replace(/[\n\t]/g, "\ufffd")
    .trim();
  if (text.length > MAX_INPUT) return UNREADABLE_REFERENCE;
  // The attribute path of an installable, when the last `#` starts one; a `#` in a password
  // leaves no such fragment, and the whole is read as the reference.
  const hashAt = text.lastIndexOf("#");
  const fragment = hashAt >= 0 ? text.slice(hashAt + 1) : "";
  const hasFragment = hashAt >= 0 && ATTR_PATH.test(fragment);
  const ref = hasFragment ? text.slice(0, hashAt) : text;
  const queryAt = ref.indexOf("?");
  const base = queryAt >= 0 ? ref.slice(0, queryAt) : ref;
  const query = queryAt >= 0 ? keptQuery(ref.slice(queryAt + 1)) : "";
  const shownBase = identifyingBase(base);
  if (shownBase === undefined) return UNREADABLE_REFERENCE;
  return `${shownBase}${query === "" ? "" : `?${query}`}${hasFragment ? `#${fragment}` : ""}`;
}

/** The part before the query, without userinfo; undefined when it cannot be read safely. */
function identifyingBase(base: string): string | undefined {
  const scheme = SCHEME.exec(base)?.[1];
  if (scheme === undefined) {
    // A local path (`/srv/fleet`, `./x`) or an indirect name (`nixpkgs/nixos-24.05`); git's
    // `user@host:path` loses its user.
    const scp = /^[^/@:]+@([^/:]+:.*)$/.exec(base);
    return scp === null ? base : scp[1];
  }
  const body = base.slice(scheme.length + 1);
  if (body.startsWith("//")) {
    const authority = withoutUserinfo(body.slice(2));
    return authority === undefined ? undefined : `${scheme}://${authority}`;
  }
  if (!body.includes("@")) return base;
  // `scheme:` without `//` and an `@`: a path may hold one (`path:/srv/a@b`); elsewhere a user
  // and password typed without `//` (`git+https:bot:tok@host/x`) are cut, and an unknown
  // scheme (`bot:tok@host`, read as scheme `bot`) is not shown.
  const known = OPAQUE_SCHEMES.has(scheme.toLowerCase()) || scheme.includes("+");
  if (!known) return undefined;
  if (scheme.toLowerCase() === "path" || scheme.toLowerCase() === "file") return base;
  const at = body.lastIndexOf("@");
  return body.slice(0, at).includes(":") ? `${scheme}:${body.slice(at + 1)}` : base;
}

/**
 * `rest` (what follows `scheme://`) without its userinfo. The authority ends at the first `/`;
 * its user and password end at its last `@`. A password holding an unencoded `/` leaves an
 * authority that is no host (`bot:p`): then everything up to the path's last `@` is userinfo.
 */
function withoutUserinfo(rest: string): string | undefined {
  const split = (s: string) => {
    const slash = s.indexOf("/");
    return slash < 0
      ? { authority: s, path: "" }
      : { authority: s.slice(0, slash), path: s.slice(slash) };
  };
  let { authority, path } = split(rest);
  if (authority.includes("@")) {
    authority = authority.slice(authority.lastIndexOf("@") + 1);
  } else if (!HOST_PORT.test(authority) && path.includes("@")) {
    ({ authority, path } = split(rest.slice(rest.lastIndexOf("@") + 1)));
  }
  return HOST_PORT.test(authority) ? `${authority}${path}` : undefined;
}

/** The allow-listed parameters of a query, in their order, as written. */
function keptQuery(query: string): string {
  return query
    .split("&")
    .filter((parameter) => {
      const name = parameter.split("=", 1)[0] ?? "";
      try {
        return KEPT_PARAMETERS.has(decodeURIComponent(name));
      } catch {
        return false; // a malformed escape: no parameter Nix knows
      }
    })
    .join("&");
}

/**
 * What may be a URL or flake reference in free text: `scheme://…`, or `scheme:…` holding a `?`
 * or an `@` (`path:/x?access_token=…`, `bot:tok@host`), up to a space or a quote.
 */
const REFERENCE_IN_TEXT =
  /(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*:(?:\/\/[^\s'"`<>]+|[^\s'"`<>]*[?@][^\s'"`<>]*)/g;

/**
 * `text` (an error, Nix's own words) with each URL or flake reference in it reduced by
 * `sourceReference`, so that a credential a reference carries is not shown through a message
 * that quotes it.
 */
export function withoutSourceSecrets(text: string): string {
  return text.replace(REFERENCE_IN_TEXT, (found) => {
    // A sentence's closing punctuation is not part of the reference.
    const tail = /[.,;:)\]]+$/.exec(found)?.[0] ?? "";
    const shown = sourceReference(found.slice(0, found.length - tail.length));
    return `${shown}${tail}`;
  });
}
