// The fleet's Prometheus as a deploy and doctor ask it: its settings, and its bearer token read
// from its file (owner-only, bounded, never shown), opened once per command.
import type { Fleet } from "../fleet/fleet.js";
import { type MetricsSource, prometheusClient } from "../metrics/prometheus.js";
import { tokenIn } from "../util/bearer-token.js";
import { readSecretFile } from "./keys-input.js";

/**
 * A client of the fleet's Prometheus, or undefined when the fleet names none or the command
 * cannot ask it (`asks` false: a deploy that does not bake, whose token file is then not read).
 */
export async function openMetrics(
  fleet: Pick<Fleet, "prometheus">,
  asks = true,
): Promise<MetricsSource | undefined> {
  const settings = fleet.prometheus;
  if (settings === undefined || !asks) return undefined;
  const file = settings.bearerTokenFile;
  const token =
    file === undefined
      ? undefined
      : bearerToken(await readSecretFile(file, "prometheus.bearerTokenFile"), file);
  return prometheusClient({ url: settings.url, token, timeout: settings.timeout });
}

/**
 * The token a file holds: one line of token characters (a trailing newline is fine). Anything
 * else is refused, naming the file and what is wrong, never its content.
 */
export function bearerToken(text: string, file: string): string {
  return tokenIn(
    text,
    `prometheus.bearerTokenFile ${file}`,
    "put the token alone on one line (visible ASCII: no space, control or non-ASCII character)",
  );
}
