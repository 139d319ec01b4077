// The fleet's Prometheus as a deploy and doctor ask it: its settings, and its bearer token read
// from its file (owner-only, bounded, never shown), opened once per command.
import type { Fleet } from "../fleet/fleet.js";
import { type MetricsSource, prometheusClient } from "../metrics/prometheus.js";
import { readSecretFile } from "./keys-input.js";

/** A client of the fleet's Prometheus, or undefined when the fleet names none. */
export async function openMetrics(
  fleet: Pick<Fleet, "prometheus">,
): Promise<MetricsSource | undefined> {
  const settings = fleet.prometheus;
  if (settings === undefined) return undefined;
  const token =
    settings.bearerTokenFile === undefined
      ? undefined
      : (await readSecretFile(settings.bearerTokenFile, "prometheus.bearerTokenFile")).trim();
  return prometheusClient({ url: settings.url, token, timeout: settings.timeout });
}
