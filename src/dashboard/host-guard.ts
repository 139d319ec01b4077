// Which requests a page of another site could have sent: on a connection that arrived on a
// loopback address, a Host header that names neither that address (with its port) nor
// `localhost` (DNS rebinding: a name the attacker controls, made to resolve to 127.0.0.1), and
// on any connection an Origin that is not the dashboard's own. Pure.
import { isLoopback } from "../util/listen-address.js";

/** Where a request arrived: the local address and port of its connection. */
export interface Arrival {
  readonly address: string;
  readonly port: number;
}

/**
 * Why the Host header is refused (undefined: it is fine). Connections to a non-loopback address
 * are not checked here: such a dashboard has a token, which a rebinding page cannot send.
 */
export function foreignHost(host: string | undefined, arrival: Arrival): string | undefined {
  const address = unmapped(arrival.address);
  if (!isLoopback(address)) return undefined;
  const own = `${address.includes(":") ? `[${address}]` : address}:${arrival.port}`;
  const named = parseHost(host);
  if (named !== undefined) {
    // localhost at any port: an ssh tunnel (-L 9000:localhost:7300) is opened as localhost:9000.
    if (named.hostname === "localhost") return undefined;
    if (named.hostname === address && named.port === arrival.port) return undefined;
  }
  return `this dashboard answers only as http://${own} or http://localhost:${arrival.port}, not as Host ${JSON.stringify(host ?? "")}: a page of another site may be reaching it through DNS rebinding`;
}

/** Whether an Origin header names another site than the Host the request was sent to. */
export function foreignOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return false;
  try {
    return new URL(origin).host !== (host ?? "").toLowerCase();
  } catch {
    // "null" (a sandboxed frame, a file:// page) and anything that is not a URL.
    return true;
  }
}

/**
 * Whether a browser says (Fetch Metadata) that another site's page made this request, other
 * than by following a link: an image or a script of that page, which sends no Origin, and
 * would spend the operator's request and live-page budgets. Another port of the same host is
 * "same-site", and another page too. Clients that send no Sec-Fetch-Site (curl, older
 * browsers) are judged by the other checks alone.
 */
export function crossSite(site: string | undefined, mode: string | undefined): boolean {
  if (site !== "cross-site" && site !== "same-site") return false;
  return mode !== "navigate";
}

/** A Host header's name (brackets dropped from IPv6) and port (80 when absent). */
function parseHost(host: string | undefined): { hostname: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9.-]+))(?::([0-9]{1,5}))?$/i.exec(host ?? "");
  if (m === null) return undefined;
  return {
    hostname: (m[1] ?? m[2] ?? "").toLowerCase(),
    port: m[3] === undefined ? 80 : Number(m[3]),
  };
}

/** `::ffff:127.0.0.1` (IPv4 on a dual-stack socket) as `127.0.0.1`. */
function unmapped(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}
