// HTTP health check URLs: `{address}` and `{name}` are the only placeholders, filled per host.

import { credentialsIn } from "../util/url-credentials.js";
import type { FleetHost, HttpCheck } from "./fleet.js";

export const URL_PLACEHOLDERS = ["address", "name"] as const;
export type UrlPlaceholder = (typeof URL_PLACEHOLDERS)[number];

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Why `url` is not a valid check URL, or undefined when it is. */
export function healthUrlProblem(url: string): string | undefined {
  for (const [, name] of url.matchAll(PLACEHOLDER)) {
    if (!(URL_PLACEHOLDERS as readonly string[]).includes(name ?? "")) {
      return `unknown placeholder {${name}}; only {address} and {name} are allowed`;
    }
  }
  const filled = url.replaceAll("{address}", "192.0.2.1").replaceAll("{name}", "host");
  if (/[{}]/.test(filled)) return 'has an unmatched "{" or "}"';
  if (!URL.canParse(filled)) return "is not a valid URL";
  const protocol = new URL(filled).protocol;
  if (protocol !== "http:" && protocol !== "https:") return `must be http:// or https://`;
  // Checks and their failures are recorded in the store and shown in every view.
  const credentials = credentialsIn(filled);
  if (credentials !== undefined) {
    return `must hold no credentials (it has ${credentials}): it is recorded and shown as written; a check that needs one is a command check ("run") that reads it on the host`;
  }
  const host = fixedHost(url);
  if (host !== undefined && deployersOwn(host)) {
    return `names ${host}, an address of whatever machine asks (loopback, link-local or unspecified): the deployer runs the HTTP checks, so it would ask itself, not the host; use {address} or {name}, or a command check ("run") to ask the host's own loopback`;
  }
  return undefined;
}

/** The host `url` names when it is written out (no placeholder in it), else undefined. */
export function fixedHost(url: string): string | undefined {
  const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(url)?.[1];
  if (authority === undefined || authority.includes("{")) return undefined;
  const filled = url.replaceAll("{address}", "192.0.2.1").replaceAll("{name}", "host");
  if (!URL.canParse(filled)) return undefined;
  return new URL(filled).hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
}

/**
 * Whether `host` (a URL's hostname, brackets off) names the asking machine itself or its link,
 * whichever machine that is: localhost, loopback, link-local (cloud metadata services live
 * there) or unspecified addresses.
 */
function deployersOwn(host: string): boolean {
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  const v4 = /^(\d+)\.(\d+)\.\d+\.\d+$/.exec(host);
  if (v4 !== null) {
    const [a, b] = [Number(v4[1]), Number(v4[2])];
    return a === 127 || a === 0 || (a === 169 && b === 254);
  }
  if (!host.includes(":")) return false;
  // An IPv4-mapped address, as URL writes it (::ffff:7f00:1 for 127.0.0.1).
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped !== null) {
    const high = Number.parseInt(mapped[1] ?? "0", 16);
    return deployersOwn(`${high >> 8}.${high & 255}.0.0`);
  }
  return host === "::1" || host === "::" || /^fe[89ab][0-9a-f]:/.test(host);
}

export function usesPlaceholder(url: string, placeholder: UrlPlaceholder): boolean {
  return url.includes(`{${placeholder}}`);
}

/** The URL for one host. An IPv6 address is bracketed, as URLs require. */
export function expandHealthUrl(url: string, host: Pick<FleetHost, "name" | "address">): string {
  const address = host.address ?? host.name;
  const literal = address.includes(":") ? `[${address}]` : address;
  return url.replaceAll("{address}", literal).replaceAll("{name}", host.name);
}

/** The HTTP checks for one host: each URL filled in, the rest as the check says. */
export function hostHttpChecks(
  checks: readonly HttpCheck[],
  host: Pick<FleetHost, "name" | "address">,
): HttpCheck[] {
  return checks.map((c) => ({
    url: expandHealthUrl(c.url, host),
    expectStatus: c.expectStatus,
    timeout: c.timeout,
    ...(c.retry === false ? { retry: false } : {}),
  }));
}
