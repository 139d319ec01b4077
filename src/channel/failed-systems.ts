// The rule that a release never names, for a host, a system that failed on it: the refusal a
// deploy gets, naming host, system and the flag that allows it.
import { UsageError } from "../errors.js";
import type { StorePath } from "../nix/store-path.js";
import { type HostHistory, hasFailed } from "./host-history.js";

/** Refuses, naming host, system and flag, a system that failed on its host. */
export function refuseFailed(
  histories: ReadonlyMap<string, HostHistory>,
  hosts: readonly { readonly host: string; readonly path: StorePath }[],
): void {
  const bad = hosts.filter(({ host, path }) => hasFailed(histories.get(host) ?? [], path));
  if (bad.length === 0) return;
  throw new UsageError(
    bad.map(({ host, path }) => failedMessage(host, path, histories.get(host) ?? [])).join("; "),
    "a release never names, for a host, a system that failed on it: fix the system, or pass --allow-failed to try it there again on purpose",
  );
}

/** `host: path failed there (release N)`. */
export function failedMessage(host: string, path: StorePath, past: HostHistory): string {
  const seq = past.findLast((e) => e.path === path && e.outcome === "failed")?.seq;
  return `${host}: ${path} failed on ${host}${seq === undefined ? "" : ` in release ${seq}`}`;
}
