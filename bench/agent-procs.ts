// The agents benchmark's agent processes, seen from its coordinator: each runs its share of the
// simulated agents (agents-child.ts) and answers one JSON line per command on stdin, so that the
// agents' CPU spreads over the machine's cores as a fleet's spreads over its hosts.
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { WindowPart } from "./agents-tally.js";

/** How the coordinator hands an agent process its settings. */
export const AGENTS_ENV = "NIXSHIP_BENCH_AGENTS";
const CHILD = join(dirname(fileURLToPath(import.meta.url)), "agents-child.js");

export interface AgentProcSettings {
  readonly storeUrl: string;
  /** This process's agents: hosts first to first + count - 1 of the fleet's names. */
  readonly first: number;
  readonly count: number;
  /** The release key's public half (`name:base64`). */
  readonly releaseKey: string;
  readonly interval: number;
  /** Store clients its agents share (S3: one SDK client each). */
  readonly clients: number;
  /** Where its agents' state directories go. */
  readonly work: string;
  /** The host key its agents sign their reports with (undefined: they sign nothing). */
  readonly signingKeyFile?: string;
}

/** One process's CPU and memory, since the last sample (peak RSS, loop delay) or cumulative. */
export interface ProcSample {
  /** User + system CPU microseconds since the process started. */
  readonly cpu: number;
  readonly rss: number;
  /** The highest RSS sampled (every 50 ms) since the last sample. */
  readonly peakRss: number;
  /** Heap in use after a full collection (only when asked for). */
  readonly heap: number;
  /** How late its event loop ran timers since the last sample, ms. */
  readonly loopP99: number;
  readonly loopMax: number;
}

/** When each agent wrote its first success marker and started the GET that found the release. */
export interface DeployTimes {
  readonly success: (number | null)[];
  readonly found: (number | null)[];
}

export interface AgentTotals {
  /** Heartbeat PUTs of each agent over the whole run. */
  readonly beats: number[];
  readonly storeErrors: number;
  readonly rejected: number;
  readonly failed: number;
  /** One agent's last error, as an example. */
  readonly trouble: string | null;
}

export type Command =
  | { readonly cmd: "start" }
  | { readonly cmd: "sample"; readonly gc: boolean }
  | { readonly cmd: "polled" }
  | { readonly cmd: "window"; readonly from: number; readonly to: number }
  | { readonly cmd: "deploy" }
  | { readonly cmd: "stop" }
  | { readonly cmd: "totals" };

export interface Answers {
  readonly start: { readonly started: number };
  readonly sample: ProcSample;
  readonly polled: { readonly polled: number };
  readonly window: WindowPart;
  readonly deploy: DeployTimes;
  readonly stop: { readonly stopped: number };
  readonly totals: AgentTotals;
}

/** The first line an agent process prints once its stores answer. */
export interface Ready {
  readonly ready: true;
  readonly pid: number;
}

/** One agent process: commands go in order, each answered by one line within a deadline. */
class AgentProc {
  readonly #child: ChildProcess;
  readonly #lines: Interface;
  readonly #waiting: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  #ended: Error | undefined;

  constructor(child: ChildProcess, name: string) {
    this.#child = child;
    this.#lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    this.#lines.on("line", (line) => this.#waiting.shift()?.resolve(line));
    child.once("close", (code) => {
      this.#ended = new Error(`${name} exited with ${code}`);
      for (const w of this.#waiting.splice(0)) w.reject(this.#ended);
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** The next line it prints, within `timeoutMs`. */
  next(timeoutMs: number, what: string): Promise<string> {
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${what}: no answer within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.#waiting.push({
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
  }

  async ask<C extends Command>(command: C, timeoutMs: number): Promise<Answers[C["cmd"]]> {
    const answer = this.next(timeoutMs, `agent process ${this.pid}: ${command.cmd}`);
    this.#child.stdin?.write(`${JSON.stringify(command)}\n`);
    return JSON.parse(await answer) as Answers[C["cmd"]];
  }

  /** Ends it: stdin closes, and it exits once its agents stopped; killed after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once("exit", () => resolve()));
    this.#child.stdin?.end();
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (this.#child.exitCode === null) this.#child.kill("SIGTERM");
  }
}

/** The agent processes, each with its share of `n` agents (contiguous, as even as can be). */
export class AgentProcs {
  readonly #procs: AgentProc[];

  private constructor(procs: AgentProc[]) {
    this.#procs = procs;
  }

  static async start(
    procs: number,
    n: number,
    settings: Omit<AgentProcSettings, "first" | "count">,
    timeoutMs: number,
  ): Promise<AgentProcs> {
    const started: AgentProc[] = [];
    for (let i = 0; i < procs; i++) {
      const first = Math.floor((i * n) / procs);
      const count = Math.floor(((i + 1) * n) / procs) - first;
      const env = {
        ...process.env,
        [AGENTS_ENV]: JSON.stringify({ ...settings, first, count } satisfies AgentProcSettings),
      };
      const child = spawn(process.execPath, [CHILD], { env, stdio: ["pipe", "pipe", "inherit"] });
      started.push(new AgentProc(child, `agent process ${i + 1}`));
    }
    const all = new AgentProcs(started);
    try {
      await Promise.all(started.map((p) => p.next(timeoutMs, `agent process ${p.pid}: start-up`)));
    } catch (err) {
      all.kill();
      throw err;
    }
    return all;
  }

  get pids(): (number | undefined)[] {
    return this.#procs.map((p) => p.pid);
  }

  get size(): number {
    return this.#procs.length;
  }

  /** Every process's answer, in the order of the processes (and so of the agents). */
  all<C extends Command>(command: C, timeoutMs: number): Promise<Answers[C["cmd"]][]> {
    return Promise.all(this.#procs.map((p) => p.ask(command, timeoutMs)));
  }

  async close(graceMs: number): Promise<void> {
    await Promise.all(this.#procs.map((p) => p.close(graceMs)));
  }

  kill(): void {
    for (const p of this.#procs) p.kill();
  }
}
