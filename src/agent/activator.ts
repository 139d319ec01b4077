// How the agent changes its own host: the same activate.sh every delivery mode runs, here as a
// local child process, then the release's HTTP checks from the host itself, then confirm or
// abort (the same magic-rollback window the ssh mode uses, with the agent as the deployer).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { Action } from "../fleet/action.js";
import {
  type ActivationResult,
  abortArgs,
  activateArgs,
  activateScript,
  confirmArgs,
  parseActivationResult,
  statusArgs,
} from "../host/activation.js";
import { httpCheck } from "../host/http-check.js";

export interface ActivationRequest {
  readonly path: string;
  readonly action: Action;
  readonly substituters: readonly string[];
  readonly trustedKeys: readonly string[];
  readonly commandChecks: readonly { readonly run: string; readonly timeout: number }[];
  /** URLs already filled in for this host. */
  readonly httpChecks: readonly {
    readonly url: string;
    readonly expectStatus: number;
    readonly timeout: number;
  }[];
  /** Seconds the host waits for the HTTP checks' verdict before rolling back by itself. */
  readonly confirmTimeout: number;
}

export type Applied =
  | { readonly status: "activated"; readonly generation: number | null }
  | {
      readonly status: "failed";
      readonly phase: string;
      readonly message: string;
      readonly rolledBack: boolean;
    }
  /** Another activation holds the host's lock: try again later; not the release's fault. */
  | { readonly status: "busy"; readonly message: string };

export interface HostSystem {
  readonly current: string | null;
  readonly profile: string | null;
  readonly generation: number | null;
}

/** The seam between the agent's logic and the host (the benchmark swaps in a no-op). */
export interface Activator {
  apply(request: ActivationRequest, onLog: (line: string) => void): Promise<Applied>;
  inspect(): Promise<HostSystem>;
}

/** Confirmation window used when the release has HTTP checks but sets no window. */
const DEFAULT_CHECK_WINDOW = 60;

export class ScriptActivator implements Activator {
  readonly #timeoutSeconds: number;

  /** `timeoutSeconds`: how long one run of activate.sh may take before it is killed. */
  constructor(options: { readonly timeoutSeconds: number }) {
    this.#timeoutSeconds = options.timeoutSeconds;
  }

  async apply(request: ActivationRequest, onLog: (line: string) => void): Promise<Applied> {
    const checksAfter = request.httpChecks.length > 0 && request.action !== "boot";
    const token = `a${Date.now().toString(36)}${randomBytes(6).toString("hex")}`;
    // The window must outlast the checks, or the host rolls back while they still run.
    const checksTime = request.httpChecks.reduce((sum, c) => sum + c.timeout, 0) + 10;
    const window = checksAfter
      ? Math.max(request.confirmTimeout || DEFAULT_CHECK_WINDOW, checksTime)
      : 0;
    const args = activateArgs({
      path: request.path,
      action: request.action,
      substituters: request.substituters,
      trustedKeys: request.trustedKeys,
      healthCommands: request.commandChecks.map((c) => c.run),
      healthTimeout: Math.max(1, ...request.commandChecks.map((c) => c.timeout)),
      confirmTimeout: window,
      token,
    });
    let run: { code: number; result: ActivationResult };
    try {
      run = await this.#run(args, onLog);
    } catch (err) {
      return {
        status: "failed",
        phase: "activate",
        message: (err as Error).message,
        rolledBack: false,
      };
    }
    const result = run.result;
    if (result.ok === false && "result" in result && result.result === "locked") {
      return { status: "busy", message: result.message };
    }
    if (!("command" in result) || result.command !== "activate") {
      const message =
        ("message" in result ? result.message : undefined) ?? `activate.sh exited with ${run.code}`;
      return { status: "failed", phase: "activate", message, rolledBack: false };
    }
    if (!result.ok) {
      return {
        status: "failed",
        phase: result.phase,
        message: result.message,
        rolledBack: result.rolledBack,
      };
    }
    if (result.result === "awaiting-confirmation") {
      for (const check of request.httpChecks) {
        const verdict = await httpCheck(check.url, check.expectStatus, check.timeout);
        onLog(verdict.message);
        if (!verdict.ok) {
          const back = await this.#run(abortArgs(token), onLog);
          return {
            status: "failed",
            phase: "health",
            message: verdict.message,
            rolledBack: back.code === 0,
          };
        }
      }
      const confirmed = await this.#run(confirmArgs(token), onLog);
      if (confirmed.code !== 0) {
        const message = "message" in confirmed.result ? confirmed.result.message : "";
        return {
          status: "failed",
          phase: "confirm",
          message: `confirmation failed: ${message}`,
          rolledBack: "result" in confirmed.result && confirmed.result.result === "rolled-back",
        };
      }
    }
    return { status: "activated", generation: result.generation };
  }

  async inspect(): Promise<HostSystem> {
    const { result } = await this.#run(statusArgs(), () => {});
    if (!("command" in result) || result.command !== "status") {
      throw new Error(`activate.sh status gave no status: ${JSON.stringify(result)}`);
    }
    return { current: result.current, profile: result.profile, generation: result.generation };
  }

  /** Runs activate.sh with `args`; its stderr goes to onLog line by line. */
  #run(
    args: readonly string[],
    onLog: (line: string) => void,
  ): Promise<{ code: number; result: ActivationResult }> {
    return new Promise((resolve, reject) => {
      const proc = spawn("sh", ["-s", "--", ...args], { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let partial = "";
      proc.stdout.setEncoding("utf8").on("data", (d: string) => {
        stdout = (stdout + d).slice(-64_000);
      });
      proc.stderr.setEncoding("utf8").on("data", (d: string) => {
        const lines = (partial + d).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) if (line) onLog(line.replace(/^activate: /, ""));
      });
      const timer = setTimeout(() => {
        onLog(`activate.sh ran over ${this.#timeoutSeconds}s; stopping it`);
        proc.kill("SIGTERM");
        setTimeout(() => proc.kill("SIGKILL"), 5000).unref();
      }, this.#timeoutSeconds * 1000);
      proc.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      proc.on("close", (code, signal) => {
        clearTimeout(timer);
        if (partial) onLog(partial);
        const exit = code ?? 128;
        if (signal !== null && !stdout.trim()) {
          reject(new Error(`activate.sh was stopped by ${signal} after ${this.#timeoutSeconds}s`));
          return;
        }
        try {
          resolve({ code: exit, result: parseActivationResult(stdout, "this host") });
        } catch (err) {
          reject(err);
        }
      });
      proc.stdin.on("error", () => {});
      proc.stdin.end(activateScript());
    });
  }
}
