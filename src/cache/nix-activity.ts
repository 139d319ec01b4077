// What a Nix run says in `--log-format internal-json` (the `@nix {…}` lines on stderr, the
// same on Nix 2.8 and 2.26), read line by line: its messages as the text lines its plain
// format prints (for build-log.ts and error messages), and its builds as progress: which
// derivations build where and since when, how many of how many are done, and the last log
// lines of each build, so that a failure can show them. Pure and bounded: at most
// MAX_ACTIVITIES activities are remembered, LOG_TAIL lines per build, TEXT_TAIL text lines.
import { withoutControls } from "../util/text.js";

/** Nix's activity types (libutil/logging.hh) that progress reads. */
const ACT_BUILDS = 104;
const ACT_BUILD = 105;
/** Nix's result types. */
const RES_BUILD_LOG_LINE = 101;
const RES_PROGRESS = 105;

const MAX_ACTIVITIES = 4096;
const MAX_BUILDS_KEPT = 64;
const LOG_TAIL = 20;
const TEXT_TAIL = 60;
const LINE_CHARS = 300;

/** A derivation Nix builds now. */
export interface RunningBuild {
  /** The derivation's path. */
  readonly drv: string;
  /** Its name (`hello-2.12`): the store path's name without `.drv`. */
  readonly name: string;
  /** The machine it builds on (`ssh-ng://…`), or undefined when here (or in the store's). */
  readonly machine: string | undefined;
  /** When it started (milliseconds, the caller's clock). */
  readonly since: number;
}

/** How far the builds of a run are. */
export interface BuildProgress {
  /** Derivations built, of those Nix expects to build, and failed (Nix's own counts). */
  readonly done: number;
  readonly expected: number;
  readonly failed: number;
  /** What builds now, oldest first. */
  readonly running: readonly RunningBuild[];
}

export class NixActivity {
  private readonly types = new Map<number, number>();
  private readonly builds = new Map<number, RunningBuild>();
  /** The last log lines of builds, running or ended, by derivation (newest builds kept). */
  private readonly logs = new Map<string, string[]>();
  private readonly texts: string[] = [];
  private counts = { done: 0, expected: 0, failed: 0 };

  /**
   * `onText`: each line of what Nix says, as its plain format prints it (ANSI colours removed).
   * `onProgress`: called when a build starts or ends, or Nix's counts change.
   */
  constructor(
    private readonly onText: (line: string) => void,
    private readonly onProgress?: (progress: BuildProgress) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** One line of Nix's stderr (a `@nix` line, or anything else: ssh's words, a plain line). */
  add(line: string): void {
    const entry = line.startsWith("@nix {") ? parseEntry(line.slice(5)) : undefined;
    if (entry === undefined) {
      this.text(line);
      return;
    }
    switch (entry.action) {
      case "msg":
        if (typeof entry.msg === "string") for (const l of entry.msg.split("\n")) this.text(l);
        return;
      case "start":
        this.start(entry);
        return;
      case "stop":
        this.stop(entry);
        return;
      case "result":
        this.result(entry);
        return;
    }
  }

  progress(): BuildProgress {
    return { ...this.counts, running: [...this.builds.values()] };
  }

  /** The last lines of what Nix said (for an error message). */
  tail(lines: number): string[] {
    return this.texts.slice(-lines);
  }

  /** The last log lines of a derivation's build, if it built in this run. */
  logOf(drv: string): readonly string[] {
    return this.logs.get(drv) ?? [];
  }

  private text(raw: string): void {
    const line = clip(withoutControls(withoutAnsi(raw)));
    if (line.trim() === "") return;
    this.say(line);
    // A failed build's last log lines follow its error, as the plain format prints them (in
    // this format Nix leaves them out of the message: they came as the build's results).
    for (const drv of failedDerivations([line])) {
      const log = this.logs.get(drv) ?? [];
      if (log.length === 0) continue;
      this.say(`       last ${log.length} log lines:`);
      for (const l of log) this.say(`       > ${l}`);
      this.logs.set(drv, []);
    }
  }

  private say(line: string): void {
    this.texts.push(line);
    if (this.texts.length > TEXT_TAIL) this.texts.shift();
    this.onText(line);
  }

  private start(entry: Entry): void {
    if (typeof entry.id !== "number" || typeof entry.type !== "number") return;
    if (this.types.size >= MAX_ACTIVITIES) {
      const oldest = this.types.keys().next().value as number;
      this.types.delete(oldest);
      this.builds.delete(oldest);
    }
    this.types.set(entry.id, entry.type);
    // The start's text is the line the plain format prints ("building '…' on '…'").
    if (typeof entry.text === "string" && entry.text !== "" && entry.type === ACT_BUILD) {
      this.text(entry.text);
    }
    if (entry.type !== ACT_BUILD) return;
    const fields = Array.isArray(entry.fields) ? entry.fields : [];
    const drv = typeof fields[0] === "string" ? fields[0] : "";
    if (drv === "") return;
    const machine = typeof fields[1] === "string" && fields[1] !== "" ? fields[1] : undefined;
    this.builds.set(entry.id, { drv, name: drvName(drv), machine, since: this.now() });
    this.logs.delete(drv);
    this.logs.set(drv, []);
    while (this.logs.size > MAX_BUILDS_KEPT) {
      this.logs.delete(this.logs.keys().next().value as string);
    }
    this.onProgress?.(this.progress());
  }

  private stop(entry: Entry): void {
    if (typeof entry.id !== "number") return;
    this.types.delete(entry.id);
    if (this.builds.delete(entry.id)) this.onProgress?.(this.progress());
  }

  private result(entry: Entry): void {
    if (typeof entry.id !== "number" || !Array.isArray(entry.fields)) return;
    const fields = entry.fields;
    if (entry.type === RES_BUILD_LOG_LINE && typeof fields[0] === "string") {
      const build = this.builds.get(entry.id);
      const log = build === undefined ? undefined : this.logs.get(build.drv);
      if (log === undefined) return;
      log.push(clip(withoutControls(withoutAnsi(fields[0]))));
      if (log.length > LOG_TAIL) log.shift();
      return;
    }
    if (entry.type === RES_PROGRESS && this.types.get(entry.id) === ACT_BUILDS) {
      const [done, expected, , failed] = fields.map((f) => (Number.isSafeInteger(f) ? f : 0));
      const next = { done: done ?? 0, expected: expected ?? 0, failed: failed ?? 0 };
      const c = this.counts;
      if (next.done === c.done && next.expected === c.expected && next.failed === c.failed) return;
      this.counts = next;
      this.onProgress?.(this.progress());
    }
  }
}

/** The derivations a failure message names ("builder for '…drv' failed", "build of '…drv'"). */
export function failedDerivations(lines: readonly string[]): string[] {
  const found = new Set<string>();
  for (const line of lines) {
    const m = /(?:builder for|build of) '(\/[^']+\.drv)'/.exec(line);
    if (m?.[1] !== undefined) found.add(m[1]);
  }
  return [...found];
}

interface Entry {
  readonly action?: unknown;
  readonly id?: unknown;
  readonly type?: unknown;
  readonly text?: unknown;
  readonly msg?: unknown;
  readonly fields?: unknown;
}

function parseEntry(json: string): Entry | undefined {
  try {
    const value: unknown = JSON.parse(json);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Entry)
      : undefined;
  } catch {
    return undefined;
  }
}

/** `/nix/store/HASH-hello-2.12.drv` → `hello-2.12`. */
export function drvName(drv: string): string {
  const base = drv.slice(drv.lastIndexOf("/") + 1).replace(/\.drv$/, "");
  return base.replace(/^[0-9a-z]{32}-/, "");
}

function withoutAnsi(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes are what is removed
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
}

function clip(line: string): string {
  return line.length > LINE_CHARS ? `${line.slice(0, LINE_CHARS)}…` : line;
}
