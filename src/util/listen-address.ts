// `--listen HOST:PORT` for nixship's servers, and whether an address is loopback only.
import { isIP } from "node:net";
import { UsageError } from "../errors.js";

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * `HOST:PORT` or `[V6]:PORT`; port 0 picks a free one. `where` names the flag in the error
 * (`cache serve: --listen`).
 */
export function parseListen(text: string, where: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    throw new UsageError(`${where} must be HOST:PORT (e.g. 127.0.0.1:8080), got '${text}'`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

/** Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

/**
 * Whether `host` is the unspecified address (0.0.0.0, ::, and their other spellings: "0",
 * "0x0", "[::0]", "::ffff:0.0.0.0", "*"): a server binds it to listen on every interface, but
 * it names no machine, so nothing can be told to fetch from it.
 */
export function isUnspecified(host: string): boolean {
  if (host === "*") return true;
  let canonical: string;
  try {
    canonical = new URL(`http://${host.includes(":") ? `[${host}]` : host}/`).hostname;
  } catch {
    return false;
  }
  return canonical === "0.0.0.0" || canonical === "[::]" || canonical === "[::ffff:0:0]";
}

/** The URL of a server bound to host:port. */
export function listenUrl(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
