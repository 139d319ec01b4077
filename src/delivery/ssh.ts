// The ssh delivery mode: the closure reaches the host from the cache (the host substitutes,
// signatures required) or from the deployer (`nix copy --to ssh://`), then activate.sh runs
// over the host's shared connection, the deployer checks health over HTTP, and confirms over
// a fresh connection, or aborts so the host rolls back at once.
import { randomBytes } from "node:crypto";
import { copyToHost } from "../cache/local-nix.js";
import type { FleetHost, SshSettings } from "../fleet/fleet.js";
import { sshDestination } from "../fleet/fleet.js";
import {
  abortArgs,
  activateArgs,
  confirmArgs,
  rollbackArgs,
  statusArgs,
} from "../host/activation.js";
import { httpCheck } from "../host/http-check.js";
import {
  type Delivery,
  type DeliveryEvent,
  type DeployOutcome,
  type DeployRequest,
  deployEachHost,
  type HostPhase,
  type HostStatus,
  type RollbackOutcome,
  rollbackEachHost,
  type WaveHost,
} from "./delivery.js";
import { lastLine, runActivate, type SshTarget, sshArgs } from "./ssh-transport.js";

/** activate.sh's log lines that start a phase. */
const PHASE_LINES: readonly [RegExp, HostPhase][] = [
  [/^activate: realising /, "realise"],
  [/^activate: switch-to-configuration /, "switch"],
  [/^activate: health: /, "health"],
  [/rolling back/, "rollback"],
];

export class SshDelivery implements Delivery {
  constructor(private readonly settings: SshSettings) {}

  target(host: FleetHost): SshTarget {
    if (host.delivery !== "ssh") {
      throw new Error(`${host.name} is delivered by ${host.delivery}, not ssh`);
    }
    return {
      name: host.name,
      destination: sshDestination(host),
      user: this.settings.user,
      configFile: this.settings.configFile,
      knownHosts: this.settings.knownHosts,
    };
  }

  async status(host: FleetHost, signal?: AbortSignal): Promise<HostStatus> {
    const r = await runActivate(this.target(host), statusArgs(), signal ? { signal } : {});
    if (r.result === undefined || !("command" in r.result) || r.result.command !== "status") {
      return { reachable: false, error: unreachable(r.code, r.stderr) };
    }
    return {
      reachable: true,
      current: r.result.current ?? undefined,
      profile: r.result.profile ?? undefined,
      generation: r.result.generation ?? undefined,
      generations: r.result.generations,
      pending: r.result.pending ?? undefined,
    };
  }

  deployWave(
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
  ): Promise<DeployOutcome[]> {
    return deployEachHost(wave, emit, (host, request) => this.deploy(host, request, emit));
  }

  async deploy(
    host: FleetHost,
    request: DeployRequest,
    emit: (event: DeliveryEvent) => void,
    signal?: AbortSignal,
  ): Promise<DeployOutcome> {
    const target = this.target(host);
    const phase = (p: HostPhase) => emit({ type: "phase", host: host.name, phase: p });
    const onLog = (line: string) => {
      emit({ type: "log", host: host.name, line: line.replace(/^activate: /, "") });
      const hit = PHASE_LINES.find(([re]) => re.test(line));
      if (hit) phase(hit[1]);
    };
    if (request.substituters.length === 0) {
      phase("copy");
      const copied = await copyClosure(target, request.path);
      if (copied !== undefined) return failed("copy", copied, false);
    }
    phase("connect");
    const token = `d${Date.now().toString(36)}${randomBytes(6).toString("hex")}`;
    const commandChecks = request.commandChecks;
    const run = await runActivate(
      target,
      activateArgs({
        path: request.path,
        action: request.action,
        substituters: request.substituters,
        trustedKeys: request.trustedKeys,
        healthCommands: commandChecks.map((c) => c.run),
        healthTimeout: Math.max(1, ...commandChecks.map((c) => c.timeout)),
        confirmTimeout: request.confirmTimeout,
        token,
      }),
      { onLog, ...(signal ? { signal } : {}) },
    );
    const result = run.result;
    if (result === undefined || !("command" in result) || result.command !== "activate") {
      const message =
        (result && "message" in result ? result.message : undefined) ??
        unreachable(run.code, run.stderr);
      return failed("connect", message, false);
    }
    if (!result.ok) return failed(result.phase, result.message, result.rolledBack);
    const awaiting = result.result === "awaiting-confirmation";
    if (
      request.httpChecks.length > 0 &&
      result.action !== "boot" &&
      result.action !== "dry-activate"
    ) {
      phase("health");
      for (const check of request.httpChecks) {
        const verdict = await httpCheck(check.url, check.expectStatus, check.timeout, signal);
        emit({ type: "log", host: host.name, line: verdict.message });
        if (!verdict.ok) {
          phase("rollback");
          const back = awaiting
            ? await runActivate(target, abortArgs(token), { fresh: true })
            : await runActivate(target, rollbackArgs(), {});
          const rolledBack = back.code === 0;
          return failed("health", verdict.message, rolledBack);
        }
      }
    }
    if (awaiting) {
      phase("confirm");
      // A new connection: the new system must still let the deployer in.
      const confirm = await runActivate(target, confirmArgs(token), { fresh: true });
      if (confirm.code !== 0) {
        const message =
          confirm.result && "message" in confirm.result && confirm.result.message
            ? `confirmation failed: ${confirm.result.message}`
            : `confirmation failed: ${unreachable(confirm.code, confirm.stderr)}; the host rolls itself back after ${request.confirmTimeout}s`;
        const rolledBack =
          confirm.result !== undefined &&
          "result" in confirm.result &&
          confirm.result.result === "rolled-back";
        return failed("confirm", message, rolledBack);
      }
    }
    phase("done");
    return {
      status: "activated",
      generation: result.generation ?? undefined,
      previous: result.previous ?? undefined,
    };
  }

  rollbackHosts(
    hosts: readonly FleetHost[],
    generation: number | undefined,
  ): Promise<RollbackOutcome[]> {
    return rollbackEachHost(hosts, (host) => this.#rollbackOne(host, generation));
  }

  async #rollbackOne(host: FleetHost, generation: number | undefined): Promise<RollbackOutcome> {
    const r = await runActivate(this.target(host), rollbackArgs(generation));
    if (r.result && "command" in r.result && r.result.command === "rollback" && r.result.ok) {
      return {
        status: "rolled-back",
        generation: r.result.generation ?? 0,
        path: r.result.path ?? "",
      };
    }
    const message =
      r.result && "message" in r.result && r.result.message
        ? r.result.message
        : unreachable(r.code, r.stderr);
    return { status: "failed", message };
  }
}

function failed(phase: HostPhase, message: string, rolledBack: boolean): DeployOutcome {
  return { status: "failed", phase, message, rolledBack };
}

/** Why ssh gave no result: its own last words (e.g. "Host key verification failed."). */
function unreachable(code: number, stderr: string): string {
  const last = lastLine(stderr);
  return last ? `ssh: ${last}` : `ssh exited with ${code} and no result`;
}

/** Copies the closure to the host over its ssh connection; returns an error message on failure. */
async function copyClosure(target: SshTarget, path: string): Promise<string | undefined> {
  try {
    await copyToHost(path, target.destination, sshArgs(target).slice(0, -1));
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
