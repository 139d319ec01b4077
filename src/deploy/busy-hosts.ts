// Another deploy mid-flight on a host: its activation awaits its deploy's confirmation (the
// deploy is in its health checks), or holds the host's lock within its deadline. Such a host
// is never "up to date": it may yet go back. A deploy refuses to start while any host it
// would change is so, and changes nothing (docs/cli.md, deploy).
import { OperationError } from "../errors.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { HostStatus } from "../host/script-outcomes.js";

/** What the host said of another deploy mid-flight there; undefined: none. */
export function busyOf(status: Extract<HostStatus, { reachable: true }>): string | undefined {
  if (status.pending !== undefined) {
    return "an activation awaits its deploy's confirmation (that deploy is in its checks)";
  }
  const held = status.activation;
  // A stale lock (its holder gone, or past its deadline) is the next activation's to take over.
  if (held === undefined || held.stale) return undefined;
  const until =
    held.deadline === null ? "" : `, until ${new Date(held.deadline * 1000).toISOString()}`;
  return `an activation holds its lock (${held.pid === null ? "holder unknown" : `pid ${held.pid}`}${until})`;
}

/** Throws, naming each host and what holds it, when another deploy is mid-flight on one. */
export function refuseBusyHosts(plan: Pick<DeployPlan, "hosts">): void {
  const busy = plan.hosts.flatMap((h) => (h.busy === undefined ? [] : [`${h.host}: ${h.busy}`]));
  if (busy.length === 0) return;
  throw new OperationError(
    "hosts-busy",
    `another deploy is mid-flight on ${busy.length === 1 ? "a host" : `${busy.length} hosts`}, so none is up to date yet and nothing was changed: ${busy.join("; ")}`,
    {
      hint: "wait for that deploy to end ('nixship status' shows its hosts applying; a deploy that went away is rolled back on each host at its deadline), then deploy again",
    },
  );
}
