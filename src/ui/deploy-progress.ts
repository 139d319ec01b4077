// Renders deploy events three ways: NDJSON (one event per line, for --json and CI tooling),
// plain lines (a pipe, a CI log), or a live block on a terminal with one line per host of the
// current wave, redrawn in place. Past GROUPED_ABOVE hosts (in the rollout or a wave), the
// live block is one line of counts and the slowest hosts, failures printed as they happen, and
// the plain lines say no phases. The plan and the final summary have their own formatters
// (`formatPlan`, `formatDeploySummary`) that the command prints where it wants them, so the
// human renderers show nothing for the `plan` and `summary` events.
// Why one long file: the three renderers answer every event type side by side, so that a new
// event is told all three ways in one place (the longer words live apart: pause-lines.ts, …).

import type { HostPhase } from "../delivery/delivery.js";
import type { DeployEvent, HostResult } from "../deploy/events.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { DeltaReport } from "../status/delta-report.js";
import { namesShown } from "../util/names-shown.js";
import { terminalJson, withoutControls } from "../util/text.js";
import { deltaText } from "./delta-text.js";
import { formatDuration, resultKind } from "./deploy-summary.js";
import { grouped, listHosts as nameHosts } from "./fleet-size.js";
import { formatBytes, partOf } from "./format.js";
import { pauseLine } from "./pause-lines.js";
import { oneLine, plural } from "./plan-format.js";

export type DeployOutputMode = "auto" | "plain" | "ndjson";

export interface DeployRenderer {
  onEvent(event: DeployEvent): void;
  /** Ends the live block (its last state stays on screen) and stops timers. Prints no summary. */
  finish(): void;
}

export type DeployOutput = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** Redraws of the live block, except those a host finishing forces, come at most this often. */
const REDRAW_MS = 100;
/** How often the live block is redrawn with nothing new, to advance the elapsed times. */
const TICK_MS = 1000;

export function createDeployRenderer(out: DeployOutput, mode: DeployOutputMode): DeployRenderer {
  if (mode === "ndjson") return ndjsonRenderer(out);
  if (mode === "plain" || out.isTTY !== true) return plainRenderer(out);
  return new LiveRenderer(out);
}

function ndjsonRenderer(out: DeployOutput): DeployRenderer {
  return {
    onEvent: (event) => {
      out.write(`${terminalJson({ ...event, time: new Date().toISOString() })}\n`);
    },
    finish: () => {},
  };
}

function plainRenderer(out: DeployOutput): DeployRenderer {
  const write = (line: string) => out.write(`${line}\n`);
  // A big rollout's log keeps each host's result, not its phases or what it printed (--json
  // has those), and names each wave's hosts briefly.
  let big = false;
  /** The phase each host was last said to be in. */
  const lastPhase = new Map<string, string>();
  return {
    onEvent: (event) => {
      switch (event.type) {
        case "plan":
          big ||= grouped(rolloutSize(event.plan));
          return;
        case "wave-start":
          big ||= grouped(event.hosts.length);
          write(waveLine(event, big));
          return;
        case "host-phase":
          // host-done says the same, with the result; a phase told again (the host's own
          // marker, then the deployer's step) is told once.
          if (event.phase !== "done" && !big && lastPhase.get(event.host) !== event.phase) {
            lastPhase.set(event.host, event.phase);
            write(`${event.host}: ${phaseLabel(event.phase)} (${formatDuration(event.elapsed)})`);
          }
          return;
        case "host-log": {
          const line = big ? "" : cleanLogLine(event.line);
          if (line !== "") write(`${event.host}: ${line}`);
          return;
        }
        case "host-done":
          write(`${event.result.host}: ${describeHostDone(event.result)}`);
          return;
        default: {
          const line = describeEvent(event);
          if (line !== undefined) write(line);
        }
      }
    },
    finish: () => {},
  };
}

/** A line for an event that concerns no single host; undefined for those shown elsewhere. */
export function describeEvent(event: DeployEvent): string | undefined {
  switch (event.type) {
    case "build-start":
      return describeBuildStart(event);
    case "build-done":
      return describeBuildDone(event);
    case "build-progress":
      return describeBuildProgress(event);
    case "push-start":
      return event.from === undefined
        ? `pushing to ${event.cache}`
        : `pushing to ${event.cache} from ${event.from} (signed here)`;
    case "gc-wait":
      return `waiting for the cache's garbage collection to finish (${event.by}, since ${event.since}; it lets go by ${event.until} at the latest)`;
    case "lease-renew-failed":
      return `warning: could not renew this deploy's lease on the cache (a collection may start meanwhile): ${event.message}`;
    case "record-failed":
      return `warning: ${event.message} (the dashboard will not show this rollout as it runs)`;
    case "cache-refused":
      return `warning: the served cache answered ${event.method} ${withoutControls(event.key)} with ${event.status}: ${withoutControls(event.error)}`;
    case "push-done": {
      const resigned =
        event.resigned === undefined
          ? ""
          : `, ${event.resigned} of them signed now with the deploy's key (a system there was signed by no key of cache.publicKeys)`;
      const present =
        event.alreadyPresent > 0 ? `; ${event.alreadyPresent} already there${resigned}` : "";
      const from = event.from === undefined ? "" : ` from ${event.from}`;
      return `pushed ${plural(event.pushed, "path")} (${formatBytes(event.fileBytes)})${from} in ${formatDuration(event.seconds)}${present}`;
    }
    case "diff-read": {
      const stopped = event.stopped ? `; stopped at the bound of ${event.limit}` : "";
      return `read ${plural(event.narinfos, "narinfo")} of the running systems' closures from the cache in ${formatDuration(event.seconds)}${stopped}`;
    }
    case "deltas-start": {
      const unread =
        event.unread.length > 0
          ? `; ${namesShown(event.unread, WAITING_SHOWN)} fetch whole (their running closure could not be read)`
          : "";
      return `deltas: ${plural(event.pairs, "pair")} for ${plural(event.hosts, "host")} to compute or find in the cache${unread}`;
    }
    case "delta-progress":
      return event.failed === undefined
        ? `deltas: ${event.done} of ${event.total} pairs`
        : `deltas: ${event.done} of ${event.total} pairs; no delta to ${event.failed.target} (it comes whole): ${oneLine(event.failed.message)}`;
    case "deltas-done": {
      if (event.error !== undefined) {
        return `deltas: none computed, every path comes whole: ${oneLine(event.error)}`;
      }
      const parts = [
        `${event.published} published (${formatBytes(event.deltaBytes)} for ${formatBytes(event.targetBytes)} of NARs)`,
        ...(event.replaced > 0
          ? [`${event.replaced} in place of what the cache held unsigned or broken`]
          : []),
        ...(event.existing > 0 ? [`${event.existing} there already`] : []),
        ...(event.skipped > 0 ? [`${event.skipped} not worth it`] : []),
        ...(event.failed > 0 ? [`${event.failed} failed`] : []),
        ...(event.unfinished !== undefined && event.unfinished > 0
          ? [`${event.unfinished} not computed when the deploy ended`]
          : []),
      ];
      return `deltas: ${parts.join(", ")} in ${formatDuration(event.seconds)}`;
    }
    case "deltas-improve":
      return `deltas: ${plural(event.pairs, "large delta")} computed again at the best level, for the hosts still to come`;
    case "deltas-improved": {
      const end = event.stopped === true ? `; stopped after ${event.done} of ${event.pairs}` : "";
      return `deltas: ${event.improved} of ${plural(event.pairs, "delta")} replaced by smaller ones (${formatBytes(event.bytesBefore)} to ${formatBytes(event.bytesAfter)}) in ${formatDuration(event.seconds)}${end}`;
    }
    case "deltas-fast-link":
      return `deltas: none computed or used: the last deploy's hosts fetched whole at ${formatBytes(event.bytesPerSecond)}/s of NAR, as fast as hosts rebuild paths from deltas`;
    case "deltas-wait":
      return `wave ${event.wave}: waiting at most ${formatDuration(event.seconds)} for deltas of ${formatBytes(event.pendingBytes)} of NAR (fetched whole at ${formatBytes(event.bytesPerSecond)}/s they take that much longer than rebuilt from deltas at ${formatBytes(event.rebuiltBytesPerSecond)}/s)`;
    case "wave-start":
      return waveLine(event, grouped(event.hosts.length));
    case "stopped": {
      const names = grouped(event.notStarted.length)
        ? `${nameHosts(event.notStarted)} (${event.notStarted.length} hosts)`
        : event.notStarted.join(", ");
      const rest = event.notStarted.length > 0 ? `; not started: ${names}` : "";
      return `stopped: ${oneLine(event.reason)}${rest}`;
    }
    case "paused":
    case "pause-ended":
      return pauseLine(event);
    case "released":
      return `published release ${event.seq} of channel ${event.channel}; the agents take it from here`;
    case "waiting":
      return `no report yet after ${formatDuration(event.elapsed)} from ${namesShown(event.hosts, WAITING_SHOWN)}`;
    case "awaiting":
      return `waiting for ${namesShown(event.hosts, WAITING_SHOWN)} to be reachable (${formatDuration(event.elapsed)} of ${formatDuration(event.limit)})`;
    case "bake-start": {
      const queries = event.analysis.length > 0 ? `, measuring ${event.analysis.join(", ")}` : "";
      return `wave ${event.wave}: baking ${formatDuration(event.seconds)} (every ${formatDuration(event.interval)})${queries}: ${namesShown(event.hosts, WAITING_SHOWN)}`;
    }
    case "bake-progress":
      return `wave ${event.wave}: baked ${formatDuration(event.elapsed)} of ${formatDuration(event.seconds)}; still baking: ${namesShown(event.hosts, WAITING_SHOWN)}`;
    case "bake-measure":
      return `${event.host}: bake: ${event.name} ${bakeVerdict(event.measurement)}`;
    case "bake-failed":
      return `wave ${event.wave}: the bake failed; rolling back ${namesShown(
        event.results.map((r) => r.host),
        WAITING_SHOWN,
      )}`;
    case "bake-done":
      if (event.result !== undefined) return `${event.host}: ${describeHostDone(event.result)}`;
      return event.interrupted
        ? `${event.host}: bake interrupted after ${formatDuration(event.seconds)}; it keeps its new system`
        : `${event.host}: baked ${formatDuration(event.seconds)}: passed`;
    case "plan":
    case "summary":
    case "host-phase":
    case "host-log":
    case "host-done":
      return undefined;
  }
}

/** A measurement in words: "0.31 is above the maximum 0.05: FAILED". */
function bakeVerdict(m: Extract<DeployEvent, { type: "bake-measure" }>["measurement"]): string {
  const verdict = m.verdict === "fail" ? "FAILED" : m.verdict === "no-data" ? "no data" : "ok";
  return `${oneLine(m.why)}: ${verdict} (${formatDuration(m.at)})`;
}

/** A wave's first line; `brief` (a big rollout, whose hosts have their own lines): a few names. */
function waveLine(event: Extract<DeployEvent, { type: "wave-start" }>, brief: boolean): string {
  const hosts =
    brief && event.hosts.length > 6
      ? `${nameHosts(event.hosts)} (${event.hosts.length} hosts)`
      : event.hosts.join(", ");
  return `wave ${event.wave} (${event.kind}): ${hosts}`;
}

/** The hosts a plan's waves activate (every host when the plan has no waves). */
function rolloutSize(plan: DeployPlan): number {
  return plan.waves.length === 0
    ? plan.hosts.length
    : plan.waves.reduce((n, w) => n + w.hosts.length, 0);
}

/** A phase as people read it: "waiting" is what the deployer does, for the agent. */
export function phaseLabel(phase: HostPhase): string {
  return phase === "waiting" ? "waiting for the agent" : phase;
}

/** Hosts shown in a waiting line at most; the rest are counted. */
const WAITING_SHOWN = 10;

/** `; 12 paths by delta (1.2 MB for 40 MB of NARs), 3 whole`, when the host used deltas. */
function deltaNote(delta: DeltaReport | undefined): string {
  const text = deltaText(delta);
  return text === undefined ? "" : `; ${text}`;
}

/** What became of a host, without its name: `activated, generation 3 (4.2s)`, `FAILED in …`. */
export function describeHostDone(result: HostResult): string {
  const o = result.outcome;
  switch (o.status) {
    case "activated": {
      const generation = o.generation === undefined ? "" : `, generation ${o.generation}`;
      return `activated${generation} (${formatDuration(result.seconds)})${deltaNote(o.delta)}`;
    }
    case "failed": {
      const after =
        o.phase === "connect"
          ? "nothing changed"
          : o.rolledBack
            ? "rolled back"
            : "not rolled back";
      return `FAILED in ${o.phase}: ${oneLine(o.message)}; ${after}`;
    }
    case "skipped": {
      const message = o.message === undefined || o.message === "" ? "" : `: ${oneLine(o.message)}`;
      switch (o.reason) {
        case "up-to-date":
          return `skipped, up to date${message}`;
        case "not-started":
          return `not started${message}`;
        case "unreachable":
          return `unreachable${message}`;
        case "refused":
          return `REFUSED${message}`;
      }
    }
  }
}

// Escape sequences (CSI, OSC, two-byte) a remote command may print.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escapes is the point
const ESCAPES = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

/**
 * A remote log line made safe to show on one line: no escape sequences or control characters,
 * and of a line redrawn with carriage returns only what a terminal would show last.
 */
export function cleanLogLine(line: string): string {
  const parts = line.replace(ESCAPES, "").split(/\r|\n/);
  const last = parts.reverse().find((part) => part.trim() !== "") ?? "";
  return last.replace(/\t/g, "  ").replace(CONTROLS, "").trimEnd();
}

/** Cut to `width` characters (code points), marking the cut with "...". */
export function truncate(text: string, width: number): string {
  const chars = Array.from(text);
  if (chars.length <= width) return text;
  return `${chars.slice(0, Math.max(0, width - 3)).join("")}...`;
}

interface LiveHost {
  readonly host: string;
  phase: HostPhase | undefined;
  /** Seconds since the host started, as last reported, and when (Date.now()). */
  elapsed: number;
  at: number;
  log: string;
  /** The final text, once the host is done, and its result. */
  done: string | undefined;
  result: HostResult | undefined;
}

/** The longest `HostPhase`. */
const PHASE_WIDTH = "rollback".length;

/** Hosts a big rollout's line names as the slowest. */
const SLOWEST = 3;

/**
 * The terminal display: finished lines stay; the current wave's block is redrawn in place. In a
 * big rollout the block is one line for the whole rollout (bigLine), kept until the end.
 */
class LiveRenderer implements DeployRenderer {
  private hosts: LiveHost[] = [];
  /** Hosts whose block was committed: late phases and logs of theirs are dropped. */
  private readonly finished = new Set<string>();
  /** Lines of the block on screen, just above the cursor. */
  private drawn = 0;
  private lastDraw = 0;
  private pending: ReturnType<typeof setTimeout> | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  /** What builds now, while the build runs: the block's one line when no host is shown. */
  private building: string | undefined;
  /** Past GROUPED_ABOVE hosts in the rollout or a wave: one line of counts, not one per host. */
  private big = false;
  /** The rollout's hosts and waves (from the plan), and the wave running now. */
  private total: number | undefined;
  private waves: number | undefined;
  private wave: number | undefined;

  constructor(private readonly out: DeployOutput) {}

  readonly onEvent = (event: DeployEvent): void => {
    switch (event.type) {
      case "plan":
        this.total = rolloutSize(event.plan);
        this.waves = event.plan.waves.length;
        this.big ||= grouped(this.total);
        return;
      case "wave-start":
        // A big rollout's line stays for all its waves and says which one runs.
        if (!this.big) {
          this.commit();
          this.big = grouped(event.hosts.length);
        }
        if (!this.big) this.print(describeEvent(event));
        this.wave = event.wave;
        for (const host of event.hosts) this.hostFor(host);
        this.draw();
        return;
      case "host-phase": {
        if (this.finished.has(event.host)) return;
        const h = this.hostFor(event.host);
        if (h.done !== undefined) return;
        h.phase = event.phase;
        h.elapsed = event.elapsed;
        h.at = Date.now();
        this.request();
        return;
      }
      case "host-log": {
        // A big rollout's line shows no logs: a host keeps no line of its own to hold.
        if (this.big || this.finished.has(event.host)) return;
        const h = this.hostFor(event.host);
        const line = cleanLogLine(event.line);
        if (h.done !== undefined || line === "") return;
        h.log = line;
        this.request();
        return;
      }
      case "build-progress":
        // One line, drawn again in place, until the build ends.
        this.building = describeBuildProgress(event).trim();
        this.request();
        return;
      case "build-done":
        this.building = undefined;
        this.print(describeEvent(event));
        return;
      case "host-done": {
        const h = this.hostFor(event.result.host);
        h.done = describeHostDone(event.result);
        h.result = event.result;
        if (this.big) {
          // What needs a person is printed as it happens, above the line of counts.
          const o = event.result.outcome;
          const bad =
            o.status === "failed" || (o.status === "skipped" && o.reason === "unreachable");
          if (bad) this.print(`${h.host}: ${h.done}`);
          else this.request();
        } else if (this.hosts.every((x) => x.done !== undefined)) this.commit();
        else this.draw();
        return;
      }
      default:
        this.print(describeEvent(event));
    }
  };

  finish(): void {
    this.commit();
  }

  /** The host's entry; a host no wave announced joins the block (starting one if need be). */
  private hostFor(host: string): LiveHost {
    let h = this.hosts.find((x) => x.host === host);
    if (h === undefined) {
      h = {
        host,
        phase: undefined,
        elapsed: 0,
        at: Date.now(),
        log: "",
        done: undefined,
        result: undefined,
      };
      this.hosts.push(h);
      if (this.ticker === undefined) {
        this.ticker = setInterval(() => this.request(), TICK_MS);
        this.ticker.unref?.();
      }
    }
    return h;
  }

  /** A permanent line: written above the block, which is drawn again below it. */
  private print(line: string | undefined): void {
    if (line === undefined) return;
    const erase = this.drawn > 0 ? `\x1b[${this.drawn}A\r\x1b[0J` : "";
    this.out.write(`${erase}${line}\n`);
    this.drawn = 0;
    if (this.hosts.length > 0 || this.building !== undefined) this.draw();
  }

  /** A redraw, now or (throttled) a little later. */
  private request(): void {
    const wait = this.lastDraw + REDRAW_MS - Date.now();
    if (wait <= 0) {
      this.draw();
    } else if (this.pending === undefined) {
      this.pending = setTimeout(() => {
        this.pending = undefined;
        this.draw();
      }, wait);
      this.pending.unref?.();
    }
  }

  private draw(): void {
    if (this.pending !== undefined) {
      clearTimeout(this.pending);
      this.pending = undefined;
    }
    if (this.hosts.length === 0 && this.building === undefined) return;
    const now = Date.now();
    // A pseudo-terminal may report 0 columns (e.g. under script(1)): then assume 100.
    const columns = this.out.columns && this.out.columns > 0 ? this.out.columns : 100;
    const width = Math.max(20, columns) - 1;
    const lines =
      this.hosts.length === 0
        ? [this.building ?? ""]
        : this.big
          ? [this.bigLine(now)]
          : this.hostLines(now);
    let text = this.drawn > 0 ? `\x1b[${this.drawn}A` : "";
    for (const line of lines) text += `\r\x1b[2K${truncate(line, width)}\n`;
    if (lines.length < this.drawn) text += "\x1b[0J";
    this.out.write(text);
    this.drawn = lines.length;
    this.lastDraw = now;
  }

  private hostLines(now: number): string[] {
    const width = Math.max(...this.hosts.map((h) => h.host.length));
    return this.hosts.map((h) => liveLine(h, width, now));
  }

  /**
   * A big rollout on one line: its wave, how many hosts are done and how, how many are in each
   * phase, and the slowest of those still running with their phase and time.
   */
  private bigLine(now: number): string {
    const results = new Map<string, number>();
    const phases = new Map<string, number>();
    const running: { host: string; phase: string; seconds: number }[] = [];
    let done = 0;
    for (const h of this.hosts) {
      if (h.result !== undefined) {
        done++;
        const label = resultKind(h.result).replaceAll("-", " ");
        results.set(label, (results.get(label) ?? 0) + 1);
        continue;
      }
      const phase = h.phase === undefined ? "waiting" : phaseLabel(h.phase);
      phases.set(phase, (phases.get(phase) ?? 0) + 1);
      if (h.phase !== undefined) {
        running.push({ host: h.host, phase, seconds: h.elapsed + Math.max(0, now - h.at) / 1000 });
      }
    }
    const total = Math.max(this.total ?? 0, this.hosts.length);
    const wave =
      this.wave === undefined ? "" : `wave ${this.wave}${this.waves ? ` of ${this.waves}` : ""}: `;
    const counts = (m: Map<string, number>) => [...m].map(([k, n]) => `${n} ${k}`).join(", ");
    const parts = [
      `${wave}${done} of ${plural(total, "host")} done${results.size > 0 ? ` (${counts(results)})` : ""}`,
    ];
    if (phases.size > 0) parts.push(counts(phases));
    // The slowest few, found in one pass over a short list: no sort of a thousand hosts.
    const slowest: typeof running = [];
    for (const r of running) {
      slowest.push(r);
      slowest.sort((a, b) => b.seconds - a.seconds);
      if (slowest.length > SLOWEST) slowest.pop();
    }
    if (slowest.length > 0) {
      parts.push(
        `slowest: ${slowest.map((r) => `${r.host} ${r.phase} ${wholeSeconds(r.seconds)}`).join(", ")}`,
      );
    }
    return parts.join("; ");
  }

  /** Draws the block a last time and leaves it on screen; the next lines go below it. */
  private commit(): void {
    this.draw();
    for (const h of this.hosts) if (h.done !== undefined) this.finished.add(h.host);
    this.hosts = [];
    this.drawn = 0;
    if (this.ticker !== undefined) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }
}

function liveLine(h: LiveHost, hostWidth: number, now: number): string {
  const name = h.host.padEnd(hostWidth);
  if (h.done !== undefined) return `${name}  ${h.done}`;
  const phase = (h.phase === undefined ? "waiting" : phaseLabel(h.phase)).padEnd(PHASE_WIDTH);
  const time =
    h.phase === undefined ? "" : wholeSeconds(h.elapsed + Math.max(0, now - h.at) / 1000);
  return `${name}  ${phase}  ${time.padStart(6)}  ${h.log}`.trimEnd();
}

function wholeSeconds(seconds: number): string {
  const s = Math.floor(Number.isFinite(seconds) && seconds > 0 ? seconds : 0);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

function describeBuildStart(event: Extract<DeployEvent, { type: "build-start" }>): string {
  // Two definitions can give one system: how many there are is known once built.
  const definitions =
    event.systems < event.hosts ? ` (${plural(event.systems, "definition")})` : "";
  const what = `building the systems of ${plural(event.hosts, "host")}${definitions}`;
  if (event.buildHost !== undefined) return `${what} on ${event.buildHost}`;
  if (event.builders !== undefined) return `${what} (builders: ${event.builders.join(", ")})`;
  return what;
}

/**
 * What builds now, for how long, and how many of how many derivations are built. Nix's
 * `expected` counts those built and those still to build, not those that failed (a failed
 * one leaves it): the whole is expected and failed together.
 */
export function describeBuildProgress(
  event: Extract<DeployEvent, { type: "build-progress" }>,
): string {
  const whole = event.expected + event.failed;
  const counts = whole > 0 ? `${partOf(event.done, whole, "derivation")} built` : "";
  const failed = event.failed > 0 ? `, ${event.failed} failed` : "";
  if (event.building === 0) return `  ${counts || "building"}${failed}`;
  const named = event.running.map(
    (b) =>
      `${b.name}${b.machine === undefined ? "" : ` on ${b.machine}`} (${formatDuration(b.seconds)})`,
  );
  const more = event.building > named.length ? ` and ${event.building - named.length} more` : "";
  return `  building ${named.join(", ")}${more}${counts ? `; ${counts}` : ""}${failed}`;
}

/** Where the systems were built, said plainly, and whether a build host's closures came here. */
function describeBuildDone(event: Extract<DeployEvent, { type: "build-done" }>): string {
  const lines = [
    `built ${plural(event.systems.length, "system")} in ${formatDuration(event.seconds)}`,
  ];
  if (event.buildHost !== undefined) {
    const c = event.closures;
    lines[0] +=
      c?.way === "from-host"
        ? ` on ${event.buildHost}; its closure stays there, pushed from ${event.buildHost} (nixship ${c.nixship} there) and signed here`
        : ` on ${event.buildHost}; copied back to the deployer for the push${c?.why ? ` (${c.why})` : ""}`;
  } else if (event.builtOn !== undefined && event.builtOn.length > 0) {
    const on = event.builtOn.map((b) => `${plural(b.derivations, "derivation")} on ${b.builder}`);
    lines[0] += ` (${on.join(", ")})`;
  }
  for (const u of event.unusable ?? []) {
    lines.push(
      `warning: builder ${u.builder} could not be used (${u.kind}): ${oneLine(u.said.at(-1) ?? "")}`,
    );
  }
  return lines.join("\n");
}
