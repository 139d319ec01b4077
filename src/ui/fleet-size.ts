// When output stops listing a line per host: past GROUPED_ABOVE hosts, the plan, the live
// progress and the summary group hosts and name in full only those that need a person.
// `--json` is never grouped.

/** Hosts a plan, a progress block or a summary lists one by one at most. */
export const GROUPED_ABOVE = 20;

/** Whether output about this many hosts groups them. */
export function grouped(hosts: number): boolean {
  return hosts > GROUPED_ABOVE;
}

/** Hosts a compact list names at most; the rest are counted. */
const NAMED = 6;

/** `a, b, c` or, past six, `a, b, c, d, e and 195 more`. */
export function listHosts(hosts: readonly string[]): string {
  return hosts.length > NAMED
    ? `${hosts.slice(0, NAMED - 1).join(", ")} and ${hosts.length - (NAMED - 1)} more`
    : hosts.join(", ");
}
