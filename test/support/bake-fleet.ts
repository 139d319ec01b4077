// What the bake tests write into a lab's fleet file: the test's Prometheus, and a policy for all
// of the lab's hosts (its own tag) with a short bake and an analysis of the example service's
// error ratio over its /work requests, as its /metrics counter says.
import { readFile, writeFile } from "node:fs/promises";

/** The error ratio of one host's GET /work over the last 4 s (Prometheus scrapes every 1 s). */
export const ERROR_RATIO =
  'sum(rate(example_web_requests_total{host="{name}",route="/work",code="500"}[4s])) / sum(rate(example_web_requests_total{host="{name}",route="/work"}[4s]))';

/** Sets the fleet's `prometheus` and the policy of the hosts tagged `tag` (undefined: none). */
export async function setBakePolicy(
  fleetFile: string,
  prometheusUrl: string,
  tag: string,
  policy: Record<string, unknown> | undefined,
): Promise<void> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as Record<string, unknown>;
  doc.prometheus = { url: prometheusUrl, timeout: 5 };
  if (policy === undefined) delete doc.policies;
  else doc.policies = { [`@${tag}`]: policy };
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
}

/** A bake of `seconds`, measured every 2 s. */
export function bake(seconds: number) {
  return { seconds, interval: 2 };
}

/** The error ratio at most `max`. */
export function errorsAtMost(max: number) {
  return { name: "errors", query: ERROR_RATIO, max, noData: "wait" };
}

/** The error ratio at most `tolerance` times the baseline's. */
export function errorsAgainstBaseline(tolerance: number) {
  return {
    name: "errors-vs-baseline",
    query: ERROR_RATIO,
    baseline: { tolerance },
    noData: "wait",
  };
}
