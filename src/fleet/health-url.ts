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
  return undefined;
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
