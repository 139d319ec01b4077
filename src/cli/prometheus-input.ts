// The fleet's Prometheus as a deploy and doctor ask it: its settings, and its bearer token read
// from its file (owner-only, bounded, never shown), opened once per command.
import { InputError } from "../errors.js";
import type { Fleet } from "../fleet/fleet.js";
import { type MetricsSource, prometheusClient } from "../metrics/prometheus.js";
import { readSecretFile } from "./keys-input.js";

/** A client of the fleet's Prometheus, or undefined when the fleet names none. */
export async function openMetrics(
  fleet: Pick<Fleet, "prometheus">,
): Promise<MetricsSource | undefined> {
  const settings = fleet.prometheus;
  if (settings === undefined) return undefined;
  const file = settings.bearerTokenFile;
  const token =
    file === undefined
      ? undefined
      : bearerToken(await readSecretFile(file, "prometheus.bearerTokenFile"), file);
  return prometheusClient({ url: settings.url, token, timeout: settings.timeout });
}

/** RFC 6750's b64token: what an Authorization: Bearer header carries. */
const TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * The token a file holds: one line of token characters (a trailing newline is fine). Anything
 * else is refused, naming the file and what is wrong, never its content: an HTTP client's error
 * about a bad header would quote it.
 */
export function bearerToken(text: string, file: string): string {
  const token = text.replace(/\r?\n$/, "").trim();
  const fix = "put the token alone on one line (letters, digits and - . _ ~ + /, then any =)";
  if (token === "") {
    throw new InputError("bad-bearer-token", `prometheus.bearerTokenFile ${file} is empty`, {
      hint: fix,
    });
  }
  if (!TOKEN.test(token)) {
    const lines = token.split("\n").length;
    const what =
      lines > 1
        ? `holds ${lines} lines`
        : "holds a character a bearer token cannot (a space, a control character or a non-ASCII one)";
    throw new InputError(
      "bad-bearer-token",
      `prometheus.bearerTokenFile ${file} ${what}: it must hold one bearer token`,
      { hint: fix },
    );
  }
  return token;
}
