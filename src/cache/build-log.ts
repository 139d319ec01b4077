// What Nix's stderr says about builds on other machines, read line by line as it comes: which
// derivation was built on which builder, and what failed on which builder, with the lines that
// say why (ssh's own words before Nix's, the build log's last lines after). Pure, bounded.
import { refusedHostKey } from "../util/ssh-words.js";

/** What went wrong on a builder, as far as its words tell. */
export type BuilderFailureKind =
  | "unreachable"
  | "host-key"
  | "auth"
  | "nix-missing"
  | "connection"
  | "build-failed";

export interface BuilderFailure {
  /** The builder's store URI, as Nix names it (`ssh-ng://root@10.0.0.2`). */
  readonly builder: string;
  readonly kind: BuilderFailureKind;
  /** The derivation, for a build that failed there. */
  readonly drv?: string;
  /** The lines that say why: at most SAID_LINES, each clipped. */
  readonly said: readonly string[];
}

const SAID_LINES = 12;
const LINE_CHARS = 300;
/** Lines kept before a failure, where ssh says why it could not connect. */
const CONTEXT_LINES = 8;
/** Derivations remembered per builder, and failures kept: far more than a deploy shows. */
const MAX_REMOTE = 10_000;
const MAX_FAILURES = 32;

const BUILDING_ON = /^building '(\/[^']+\.drv)' on '([^']+)'/;
const BUILDING = /^building '(\/[^']+\.drv)'\.\.\./;
const CANNOT_BUILD_ON = /^cannot build on '([^']+)': (.*)$/;
const BUILD_FAILED_ON = /^error: build of '(\/[^']+\.drv)' on '([^']+)' failed: (.*)$/;
const CANNOT_OPEN = /^error: cannot open connection to remote store '([^']+)': (.*)$/;
/** A build that failed in the store Nix was pointed at (`--store`): no machine in its words. */
const BUILDER_FAILED = /^error: (builder for '(\/[^']+\.drv)' failed.*)$/;
/** Nix's own progress lines, which are never ssh's words about a connection. */
const NIX_OWN = /^(building |copying |copying path |these |this |error: |warning: |\s+> )/;

export class NixBuildLog {
  /** Each derivation built on another machine → that machine's URI. */
  readonly remote = new Map<string, string>();
  readonly failures: BuilderFailure[] = [];
  private context: string[] = [];
  /** A failure whose indented lines (the build log's end) are still being read. */
  private open: { builder: string; drv: string; said: string[] } | undefined;

  /**
   * `store`: the machine whose store the command builds in (a build host), named in failures
   * that Nix reports without one.
   */
  constructor(private readonly store?: string) {}

  add(rawLine: string): void {
    const line = rawLine.slice(0, LINE_CHARS * 4);
    if (this.open !== undefined) {
      if (/^\s/.test(line) && this.open.said.length < SAID_LINES) {
        this.open.said.push(clip(line.trim()));
        return;
      }
      this.closeOpen();
    }
    const building = BUILDING_ON.exec(line);
    if (building?.[1] !== undefined && building[2] !== undefined) {
      if (this.remote.size < MAX_REMOTE) this.remote.set(building[1], building[2]);
      this.context = [];
      return;
    }
    const here = this.store === undefined ? null : BUILDING.exec(line);
    if (this.store !== undefined && here?.[1] !== undefined) {
      if (this.remote.size < MAX_REMOTE) this.remote.set(here[1], this.store);
      this.context = [];
      return;
    }
    const cannot = CANNOT_BUILD_ON.exec(line) ?? CANNOT_OPEN.exec(line);
    if (cannot?.[1] !== undefined) {
      const said = [...this.context, clip(cannot[2] ?? "")];
      this.push({ builder: cannot[1], kind: classify(said), said: said.slice(-SAID_LINES) });
      this.context = [];
      return;
    }
    const failed = BUILD_FAILED_ON.exec(line);
    if (failed?.[1] !== undefined && failed[2] !== undefined) {
      this.open = { builder: failed[2], drv: failed[1], said: [clip(failed[3] ?? "")] };
      return;
    }
    const inStore = this.store === undefined ? null : BUILDER_FAILED.exec(line);
    if (this.store !== undefined && inStore?.[1] !== undefined && inStore[2] !== undefined) {
      this.open = { builder: this.store, drv: inStore[2], said: [clip(inStore[1])] };
      return;
    }
    if (NIX_OWN.test(line)) this.context = [];
    else if (line.trim() !== "") {
      this.context.push(clip(line.trim()));
      if (this.context.length > CONTEXT_LINES) this.context.shift();
    }
  }

  /** Call once the output ended, so that a failure's last lines are kept. */
  end(): void {
    this.closeOpen();
  }

  /** The builders that built something, each with how many derivations, in first-seen order. */
  builtOn(): { builder: string; derivations: number }[] {
    const counts = new Map<string, number>();
    for (const uri of this.remote.values()) counts.set(uri, (counts.get(uri) ?? 0) + 1);
    return [...counts].map(([builder, derivations]) => ({ builder, derivations }));
  }

  private closeOpen(): void {
    if (this.open === undefined) return;
    const { builder, drv, said } = this.open;
    this.open = undefined;
    this.push({ builder, kind: "build-failed", drv, said });
  }

  private push(failure: BuilderFailure): void {
    if (this.failures.length < MAX_FAILURES) this.failures.push(failure);
  }
}

/** What ssh's (or the shell's) words before Nix's "cannot build on" mean. */
function classify(said: readonly string[]): BuilderFailureKind {
  const text = said.join("\n");
  if (refusedHostKey(text)) return "host-key";
  if (/Permission denied \(|Too many authentication failures/i.test(text)) return "auth";
  if (
    /Connection refused|No route to host|Connection timed out|timed out during banner|Network is unreachable|Could not resolve hostname|Name or service not known|Connection closed by remote host/i.test(
      text,
    )
  ) {
    return "unreachable";
  }
  if (
    /nix-daemon: (command )?not found|nix-store: (command )?not found|command not found|No such file or directory/i.test(
      text,
    )
  ) {
    return "nix-missing";
  }
  return "connection";
}

function clip(line: string): string {
  return line.length > LINE_CHARS ? `${line.slice(0, LINE_CHARS - 1)}…` : line;
}
