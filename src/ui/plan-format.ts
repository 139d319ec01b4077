// The deploy plan as a table for people: one row per host (past GROUPED_ABOVE hosts, a row per
// group of hosts alike, then in full the hosts that need a person), a totals line, then what
// changes package by package (plan-diff-format.ts) and the checks. Pure; the JSON output
// elsewhere keeps every host and the full store paths.

import { hostKeyRefused } from "../delivery/host-key-refused.js";
import type { HealthChecks } from "../fleet/fleet.js";
import type {
  DeployPlan,
  HostPlan,
  PlannedPendingBoot,
  PlannedWave,
  Transfer,
} from "../fleet/plan.js";
import { storeName } from "../nix/store-path.js";
import { withoutControls } from "../util/text.js";
import { GROUPED_ABOVE, grouped, listHosts } from "./fleet-size.js";
import { formatBytes, formatEpochSeconds, plural } from "./format.js";
import { formatPlanBakes } from "./plan-bake-format.js";
import { formatPlanDeltas } from "./plan-deltas-format.js";
import { formatPlanDiffs } from "./plan-diff-format.js";
import { formatPlanPauses } from "./plan-pauses-format.js";

export { storeName } from "../nix/store-path.js";

/** `/nix/store/<hash>-web-v1` → `<first 8 of hash>-web-v1`. */
export function hashAndName(path: string): string {
  const name = storeName(path);
  return name === path
    ? path
    : `${path.slice("/nix/store/".length, "/nix/store/".length + 8)}-${name}`;
}

/**
 * Names for systems shown side by side: their names, or where two different ones share a name
 * (NixOS toplevels often do), the start of each hash too, so that they never read alike.
 */
export function systemNamer(paths: readonly (string | undefined)[]): (path: string) => string {
  const given = [...new Set(paths.filter((p) => p !== undefined))];
  return new Set(given.map(storeName)).size === given.length ? storeName : hashAndName;
}

/**
 * Rows of cells as lines, each column padded to its widest cell and separated by two spaces.
 * The last column is not padded, so lines carry no trailing blanks.
 */
export function formatTable(input: readonly (readonly string[])[]): string[] {
  // Every cell is one line without control characters, whatever a host or a store put in it.
  const rows = input.map((row) =>
    row.map((cell) => {
      const clean = withoutControls(cell);
      return clean.includes("\n") ? oneLine(clean) : clean;
    }),
  );
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}

/** One line of text for a table cell: line breaks become "; ", and nothing else controls. */
export function oneLine(text: string): string {
  return text
    .split(/\r?\n/)
    .map((line) => withoutControls(line).trim())
    .filter((line) => line !== "")
    .join("; ");
}

export { plural };

export function formatTransfer(t: Transfer): string {
  return `${plural(t.paths, "path")}, ${formatBytes(t.bytes)}`;
}

export interface PlanFormatOptions {
  /** `--diff`: every package change of each group of hosts, not one line per group. */
  readonly diff?: boolean;
}

const HOST_HEADER = ["host", "current", "desired", "action", "transfer", "note"];

export function formatPlan(plan: DeployPlan, options: PlanFormatOptions = {}): string {
  return [
    ...(grouped(plan.hosts.length) ? groupedRows(plan) : hostRows(plan, plan.hosts)),
    planTotals(plan),
    ...formatPlanDeltas(plan),
    ...formatPlanDiffs(plan.diffs, options.diff === true),
    ...planWaves(plan),
    ...formatPlanPauses(plan),
    ...planChecks(plan),
    ...formatPlanBakes(plan),
    ...planPinning(plan),
    ...planConnections(plan),
  ].join("\n");
}

/** What the bound on held ssh connections costs: logins beyond one per host and activation. */
function planConnections(plan: DeployPlan): string[] {
  const c = plan.connections;
  if (c === undefined) return [];
  return [
    `connections: ${plural(c.hosts, "ssh host")}, at most ${c.bound} connections held at once: about ${plural(c.logins, "login")} to them, ${c.again} of them again for a host whose connection was let go (--max-connections)`,
  ];
}

/** The per-host table: a row for each host given. */
function hostRows(plan: DeployPlan, hosts: readonly HostPlan[]): string[] {
  return formatTable([HOST_HEADER, ...hosts.map((host) => planRow(plan, host))]);
}

/**
 * The table of a big plan: a row per group of hosts with the same current and desired system,
 * action and kind of note (their count, their transfer summed, a few of their names on the line
 * below), then the per-host rows of every host that needs a person.
 */
function groupedRows(plan: DeployPlan): string[] {
  const groups = new Map<string, { row: string[]; hosts: HostPlan[] }>();
  for (const host of plan.hosts) {
    const row = groupRow(plan, host);
    const key = JSON.stringify(row);
    const group = groups.get(key) ?? { row, hosts: [] };
    group.hosts.push(host);
    groups.set(key, group);
  }
  const table = formatTable([
    ["hosts", "current", "desired", "action", "transfer", "note"],
    ...[...groups.values()].map(({ row, hosts }) => [
      String(hosts.length),
      ...row.slice(0, 3),
      groupTransfer(hosts),
      ...row.slice(3),
    ]),
  ]);
  const lines = [
    `${plural(plan.hosts.length, "host")} in ${plural(groups.size, "group")} (past ${GROUPED_ABOVE} hosts the plan groups them; --json lists each):`,
    table[0] as string,
  ];
  [...groups.values()].forEach(({ hosts }, i) => {
    lines.push(table[i + 1] as string);
    lines.push(withoutControls(`    ${listHosts(hosts.map((h) => h.host))}`));
  });
  const attention = plan.hosts.filter(needsPerson);
  if (attention.length > 0) {
    lines.push(`${plural(attention.length, "host needs", "hosts need")} a person:`);
    lines.push(...hostRows(plan, attention).map((line) => `  ${line}`));
  }
  return lines;
}

/** What a host the survey could not read is called: why it was not, in a word or three. */
function unreachableWord(host: HostPlan): string {
  if (host.hostKey) return "host key refused";
  return host.answerUnreadable ? "unreadable" : "unreachable";
}

/**
 * Whether a host is listed in full in a big plan: it cannot be reached (its host key refused
 * among them), stands in by its status record, failed there, has a boot left pending, or its
 * booted system is unknown to a reboot policy.
 */
export function needsPerson(host: HostPlan): boolean {
  return (
    host.action === "unreachable" ||
    host.hostKey === true ||
    host.stored !== undefined ||
    host.failedThere !== undefined ||
    host.unbaked !== undefined ||
    host.busy !== undefined ||
    host.pendingBoot !== undefined ||
    host.bootUnknown === true ||
    host.behindRollout !== undefined ||
    host.refusedFailed !== undefined
  );
}

/** A group's cells without count and transfer: current, desired, action, and its kind of note. */
function groupRow(plan: DeployPlan, host: HostPlan): string[] {
  const name = systemNamer([host.current, host.desired]);
  const current = host.current === undefined ? "-" : name(host.current);
  const desired = name(host.desired);
  switch (host.action) {
    case "skip":
      return [
        current,
        desired,
        "skip",
        host.stored ? `up to date, ${note(plan, host, true)}` : "up to date",
      ];
    case "unreachable":
      return ["?", desired, "unreachable", unreachableWord(host)];
    case "activate":
      return [
        current,
        desired,
        host.pendingBoot?.decision === "judge" ? "judge boot" : plan.action,
        note(plan, host, true),
      ];
  }
}

/** What a group's hosts fetch together; "-" when none of them activates. */
function groupTransfer(hosts: readonly HostPlan[]): string {
  if (!hosts.some((h) => h.action === "activate")) return "-";
  const sum = hosts.reduce(
    (t, h) => ({ paths: t.paths + h.transfer.paths, bytes: t.bytes + h.transfer.bytes }),
    { paths: 0, bytes: 0 },
  );
  return `${hosts.some(isUpperBound) ? "at most " : ""}${formatTransfer(sum)}`;
}

/** Waves a big plan shows before the count of the rest, and a small plan at most. */
const FIRST_WAVES_BIG = 3;
const FIRST_WAVES = 10;

/** When the rollout stops starting waves (run-rollout.ts's overBudget, and a failed canary). */
function failureBudget(maxFailures: number): string {
  const hosts = maxFailures === 1 ? "1 host fails" : `${maxFailures} hosts fail`;
  const first = maxFailures === 0 ? "a host fails" : `more than ${hosts}`;
  return `  no new wave once ${first}, or a canary does (--max-failures ${maxFailures})`;
}

/** The waves the deploy runs, in order (each role's canaries first); nothing when none. */
function planWaves(plan: DeployPlan): string[] {
  if (plan.atOnce === true && plan.waves.length > 0) {
    return [
      `waves: none (--async): one release names every host at once, and nothing is watched: no canary, pause, bake or failure limit (each agent's own checks still roll its host back)`,
    ];
  }
  if (plan.waves.length === 0) return [];
  // Past a few waves, the first ones and the last: the rest are alike, and --json has them all.
  const first = grouped(plan.hosts.length) ? FIRST_WAVES_BIG : FIRST_WAVES;
  const last = plan.waves[plan.waves.length - 1] as PlannedWave;
  const shown = plan.waves.length > first + 2 ? [...plan.waves.slice(0, first), last] : plan.waves;
  const roles = new Map(plan.hosts.map((h) => [h.host, h.role]));
  const lines = shown.map(
    (w) =>
      `  ${w.wave}${w.kind === "canary" ? " (canary)" : ""}: ${waveHosts(w, roles)}` +
      (w.hosts.length > 6 ? ` (${w.hosts.length} hosts)` : ""),
  );
  if (shown.length < plan.waves.length) {
    lines.splice(first, 0, `  … ${plan.waves.length - first - 1} more waves`);
  }
  if (plan.maxFailures !== undefined) lines.push(failureBudget(plan.maxFailures));
  return ["waves:", ...lines.map((l) => withoutControls(l))];
}

/**
 * A wave's hosts; a canary wave of hosts of several roles names each role's (every role has its
 * own canaries: why the canary wave holds more hosts than the policy's `canary`).
 */
function waveHosts(wave: PlannedWave, roles: ReadonlyMap<string, string | undefined>): string {
  const byRole = new Map<string, string[]>();
  for (const host of wave.hosts) {
    const role = roles.get(host) ?? "";
    byRole.set(role, [...(byRole.get(role) ?? []), host]);
  }
  if (wave.kind !== "canary" || byRole.size < 2) return listHosts(wave.hosts);
  const each = [...byRole].map(
    ([role, hosts]) => `${role === "" ? "the fleet's policy" : role}: ${listHosts(hosts)}`,
  );
  return `each role's own: ${each.join("; ")}`;
}

/**
 * Whose trust each host takes, hosts alike on one line: pinned (its own keys, or its agent's
 * configuration) or not (the deployer's); nothing when no host said.
 */
function planPinning(plan: DeployPlan): string[] {
  // Hosts alike by what is said of them, said of one host or of several.
  const groups = new Map<string, { hosts: string[]; say: (one: boolean) => string }>();
  for (const host of plan.hosts) {
    const p = host.pinning;
    if (p === undefined) continue;
    const keys = p.pinned && p.by !== "agent" ? p.keys.join(", ") || "none" : "";
    const kind = !p.pinned ? `not ${p.activator}` : p.by === "agent" ? "agent" : `keys ${keys}`;
    const say = (one: boolean) =>
      !p.pinned
        ? `not pinned: ${one ? "it takes" : "they take"} the deployer's trust${p.activator ? ` (${one ? "it has" : "they have"} nixship-activate: set ${one ? "its" : "their"} sudo to use it)` : ""}`
        : p.by === "agent"
          ? `pinned: ${one ? "its agent's" : "their agents'"} own keys`
          : `pinned: nixship-activate, keys ${keys}`;
    const group = groups.get(kind) ?? { hosts: [], say };
    group.hosts.push(host.host);
    groups.set(kind, group);
  }
  if (groups.size === 0) return [];
  return [
    "trust:",
    ...[...groups.values()].map(({ hosts, say }) =>
      withoutControls(`  ${listHosts(hosts)}: ${say(hosts.length === 1)}`),
    ),
  ];
}

/** The checks each host is deployed with, hosts with the same checks on one line. */
function planChecks(plan: DeployPlan): string[] {
  const byChecks = new Map<string, { hosts: string[]; text: string }>();
  for (const host of plan.hosts) {
    if (host.checks === undefined) continue;
    const text = describeChecks(host.checks);
    const entry = byChecks.get(text) ?? { hosts: [], text };
    entry.hosts.push(host.host);
    byChecks.set(text, entry);
  }
  if (byChecks.size === 0) return [];
  return [
    "checks:",
    ...[...byChecks.values()].map((e) => withoutControls(`  ${listHosts(e.hosts)}: ${e.text}`)),
  ];
}

function describeChecks(checks: HealthChecks): string {
  const parts = [
    ...checks.http.map((c) => `GET ${c.url} answers ${c.expectStatus} within ${c.timeout}s`),
    ...checks.commands.map((c) => `\`${oneLine(c.run)}\` exits 0 within ${c.timeout}s`),
  ];
  return parts.length === 0 ? "none" : parts.join("; ");
}

function planRow(plan: DeployPlan, host: HostPlan): string[] {
  const name = systemNamer([host.current, host.desired]);
  const current =
    host.current === undefined
      ? "-"
      : `${name(host.current)}${host.generation === undefined ? "" : ` (gen ${host.generation})`}`;
  const desired = name(host.desired);
  switch (host.action) {
    case "skip":
      return [
        host.host,
        current,
        desired,
        "skip",
        "-",
        host.stored ? `up to date, ${note(plan, host)}` : "up to date",
      ];
    case "unreachable":
      return [
        host.host,
        "?",
        desired,
        host.answerUnreadable ? "unreadable" : "unreachable",
        "-",
        oneLine(host.hostKey ? hostKeyRefused(host.error ?? "") : (host.error ?? "unreachable")),
      ];
    case "activate":
      return [
        host.host,
        current,
        desired,
        host.pendingBoot?.decision === "judge" ? "judge boot" : plan.action,
        `${isUpperBound(host) ? "at most " : ""}${formatTransfer(host.transfer)}`,
        note(plan, host),
      ];
  }
}

/**
 * The host's note. `kind`: only what hosts alike share (no times, paths or messages of its own),
 * which a big plan groups hosts by.
 */
function note(plan: DeployPlan, host: HostPlan, kind = false): string {
  const name = systemNamer([host.current, host.desired, host.pendingBoot?.path ?? undefined]);
  const notes: string[] = [];
  if (host.stored)
    notes.push(
      kind
        ? "as its status record says"
        : `as its status record of ${host.stored.at} says (${host.stored.why})`,
    );
  if (host.behindRollout !== undefined) {
    const { rollout, why } = host.behindRollout;
    notes.push(kind ? "behind its last rollout" : `behind rollout ${rollout} (${why})`);
  }
  if (host.refusedFailed !== undefined) {
    notes.push(
      kind
        ? "refused: its system failed there"
        : `refused: ${host.refusedFailed}; the deploy names it again only with --allow-failed`,
    );
  }
  if (host.transferBasis === "whole-closure") {
    notes.push("current system unknown: whole closure counted");
  } else if (host.transferBasis === "current-system") {
    notes.push("its store was not asked: counted from its system");
  }
  const changed = host.reboot ?? [];
  if (host.rebooting) {
    const counting =
      host.bootCounting === undefined
        ? ""
        : host.bootCounting
          ? " (its boot loader counts boots)"
          : " (no boot counting: a system that does not boot leaves it down)";
    notes.push(
      changed.length > 0
        ? `rebooted into it${counting}: its ${changed.join(", ")} differ from the booted system's`
        : `rebooted into it${counting} (--reboot always)`,
    );
  } else if (changed.length > 0) {
    notes.push(`needs a reboot: its ${changed.join(", ")} differ from the booted system's`);
  } else if (host.bootUnknown) {
    notes.push(
      "what it booted is unknown (no booted system): --reboot auto does not reboot it; --reboot always would",
    );
  }
  if (host.pendingBoot !== undefined) {
    notes.push(
      kind
        ? host.pendingBoot.reason === "not-rebooted"
          ? "boots another system next, not rebooted yet: this activation replaces it"
          : `a reboot is unconfirmed: ${host.pendingBoot.decision === "judge" ? "judged first" : "this activation replaces it"}`
        : pendingBootNote(host.pendingBoot, name),
    );
  }
  if (host.busy !== undefined) {
    notes.push(
      kind
        ? "another deploy is mid-flight there"
        : `another deploy is mid-flight there: ${host.busy}`,
    );
  }
  if (host.failedThere !== undefined) {
    notes.push(
      kind
        ? "its system failed there, so it is activated again"
        : `its system failed there, so it is activated again (${host.failedThere})`,
    );
  } else if (host.unbaked !== undefined) {
    const { rollout, why } = host.unbaked;
    notes.push(
      kind
        ? "its bake never finished, so it is activated and baked again"
        : `its bake in rollout ${rollout} never finished (${why}), so it is activated and baked again`,
    );
  } else if (
    host.busy === undefined &&
    host.current !== undefined &&
    host.current === host.desired
  ) {
    notes.push(host.secretsChange ? "already running; its secrets change" : "already running");
  } else if (host.secretsChange) notes.push("its secrets change");
  if (plan.action === "dry-activate") notes.push("dry run: nothing changes");
  return notes.join("; ");
}

/** A boot an earlier deploy left unconfirmed, and what this deploy does with it. */
function pendingBootNote(pending: PlannedPendingBoot, name: (path: string) => string): string {
  const into = pending.path === null ? "a new system" : name(pending.path);
  const at = pending.since === null ? undefined : formatEpochSeconds(pending.since);
  const since = at === undefined ? "" : ` since ${at}`;
  if (pending.decision === "judge") {
    return `its reboot into ${into}${since} is unconfirmed: judged first (its checks, then confirm-boot or abort-boot)`;
  }
  return pending.reason === "not-rebooted"
    ? `boots ${into} next${at === undefined ? "" : ` (set ${at})`}, not rebooted yet: this activation replaces it`
    : `a reboot into ${into}${since} is unconfirmed${pending.reason === "booted-other" ? " (it booted another system)" : ""}: this activation replaces it`;
}

/** A transfer counted without asking the host's store: it may hold more. */
function isUpperBound(host: HostPlan): boolean {
  return host.transferBasis === "current-system" || host.transferBasis === "whole-closure";
}

function planTotals(plan: DeployPlan): string {
  const hosts = plan.hosts.length;
  const verb = plan.changes === 1 ? "changes" : "change";
  const bound = plan.hosts.some((h) => h.action === "activate" && isUpperBound(h));
  const parts = [
    `${plan.changes} of ${plural(hosts, "host")} ${verb}`,
    `${bound ? "at most " : ""}${formatTransfer(plan.totals)} to transfer`,
  ];
  const { totals, distinct } = plan;
  if (distinct.paths !== totals.paths || distinct.bytes !== totals.bytes) {
    parts[1] += ` (${formatTransfer(distinct)} distinct)`;
  }
  // A host that answered, but not with a status, is counted apart: it is no outage.
  const unreadable = plan.hosts.filter((h) => h.answerUnreadable).length;
  const silent = plan.counts.unreachable - unreadable;
  if (silent > 0) parts.push(`${silent} unreachable`);
  if (unreadable > 0) parts.push(`${unreadable} unreadable`);
  return parts.join("; ");
}
