// The ssh delivery mode: the closure reaches the host from the cache (the host substitutes,
// signatures required) or from the deployer (`nix copy --to ssh://`), then the activation
// session (host/activation-session.ts) runs over ssh: activate.sh over the host's shared
// connection, the deployer's HTTP checks, then confirm over a fresh connection, or abort.
import { copyToHost } from "../cache/local-nix.js";
import type { FleetHost, SshHost, SshSettings } from "../fleet/fleet.js";
import {
  DEFAULT_MAX_CONNECTIONS,
  reachedBySudo,
  sshDestination,
  sshUserOf,
} from "../fleet/fleet.js";
import { generationOnly, type RollbackTarget } from "../fleet/rollback-target.js";
import {
  activateArgs,
  CHECK_PATHS_VARIABLE,
  DEFAULT_ACTIVATION_TIMEOUT,
  rollbackArgs,
  SECRETS_VARIABLE,
  scriptArgs,
  statusArgs,
} from "../host/activation.js";
import {
  type ActivationTransport,
  runActivationSession,
  type ScriptRunOptions,
  SESSION_MARGIN,
} from "../host/activation-session.js";
import { type HostClosure, hostClosure } from "../host/host-closure.js";
import {
  type CheckOutcome,
  checkCommand,
  checkDeadline,
  checkOutcome,
  hostStatus,
  rollbackOutcome,
} from "../host/script-outcomes.js";
import type { StorePath } from "../nix/store-path.js";
import { withDeadline } from "../util/deadline.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { mapLimit } from "../util/pool.js";
import { testWait } from "../util/test-waits.js";
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
  type WaveContext,
  type WaveHost,
} from "./delivery.js";
import { nixSshOpts } from "./ssh-config-for-nix.js";
import { prefetchSshSettings, sshSettings } from "./ssh-host-key.js";
import { sharedConnections } from "./ssh-master-pool.js";
import { checkNewConnection } from "./ssh-preflight.js";
import { settlingTarget } from "./ssh-settle-kex.js";
import {
  runActivate,
  type SshTarget,
  sshArgs,
  withSharedConnection,
  withSharedConnectionIfRoom,
} from "./ssh-transport.js";

/** Seconds a status query may take ($NIXSHIP_STATUS_TIMEOUT shortens it for tests). */
const STATUS_TIMEOUT = 60;
/** Seconds a closure query may take: activate.sh's own bound (60 s) and the connection. */
const CLOSURE_TIMEOUT = 90;
/** Hosts whose checks run at once (a wave's, each round of its bake). */
const CHECK_CONCURRENCY = 32;

export class SshDelivery implements Delivery {
  constructor(private readonly settings: SshSettings) {
    // One deployer, one bound on its held connections (the fleet's, or --max-connections).
    sharedConnections.setBound(settings.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  }

  target(host: FleetHost): SshTarget {
    if (host.delivery !== "ssh") {
      throw new Error(`${host.name} is delivered by ${host.delivery}, not ssh`);
    }
    return sshTarget(host, this.settings);
  }

  async status(
    host: FleetHost,
    signal?: AbortSignal,
    paths: readonly StorePath[] = [],
  ): Promise<HostStatus> {
    const target = this.target(host);
    const ask = (over: SshTarget, fresh: boolean) =>
      runActivate(over, statusArgs(paths.length > 0), {
        timeoutSeconds: testWait("NIXSHIP_STATUS_TIMEOUT", STATUS_TIMEOUT, STATUS_TIMEOUT),
        ...(fresh ? { fresh } : {}),
        ...(signal ? { signal } : {}),
        ...(paths.length > 0 ? { variables: { [CHECK_PATHS_VARIABLE]: paths.join("\n") } } : {}),
      });
    // Past the bound on held connections a status makes no master (which would be ended
    // before the host's wave, one more operator's login): it logs in once on its own, with the
    // key exchange of a login that carries no secret (ssh-settle-kex.ts); settings ssh cannot
    // give leave its own key exchange, and the login says what is wrong.
    const r = await withSharedConnectionIfRoom(target, async (shared) =>
      shared
        ? ask(target, false)
        : ask(await settlingTarget(target, await sshSettings(target).catch(() => new Map())), true),
    );
    return hostStatus(r, paths);
  }

  /** The closure of `path` as the host's store has it (activate.sh `closure`). */
  async closure(host: FleetHost, path: StorePath, signal?: AbortSignal): Promise<HostClosure> {
    const r = await runActivate(this.target(host), scriptArgs({ verb: "closure", path }), {
      timeoutSeconds: CLOSURE_TIMEOUT,
      ...(signal ? { signal } : {}),
    });
    return hostClosure(r, path);
  }

  async deployWave(
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
    context: WaveContext,
  ): Promise<DeployOutcome[]> {
    // Each host's preflight reads ssh's settings for it: one shell reads the wave's.
    const drop = prefetchSshSettings(wave.map(({ host }) => this.target(host)));
    try {
      return await deployEachHost(wave, emit, (host, request) =>
        this.deploy(host, request, emit, context.signal),
      );
    } finally {
      drop();
    }
  }

  async deploy(
    host: FleetHost,
    request: DeployRequest,
    emit: (event: DeliveryEvent) => void,
    signal?: AbortSignal,
  ): Promise<DeployOutcome> {
    const target = this.target(host);
    const phase = (p: HostPhase) => emit({ type: "phase", host: host.name, phase: p });
    if (request.substituters.length === 0) {
      phase("copy");
      const copied = await copyClosure(target, request.path, request.activationTimeout, signal);
      if (copied !== undefined) {
        return { status: "failed", phase: "copy", message: copied, rolledBack: false };
      }
    }
    return runActivationSession(sshActivationTransport(target), request, {
      phase,
      log: (line) => emit({ type: "log", host: host.name, line }),
      ...(signal ? { signal } : {}),
    });
  }

  /** Each host's command checks again, over its shared connection (activate.sh `check`). */
  async runChecks(hosts: readonly WaveHost[], signal?: AbortSignal): Promise<CheckOutcome[]> {
    return mapLimit(hosts, CHECK_CONCURRENCY, async ({ host, request }) => {
      const command = checkCommand(request.commandChecks);
      if (command === undefined) return { ok: true };
      return runActivate(this.target(host), scriptArgs(command), {
        timeoutSeconds: checkDeadline(command),
        ...(signal ? { signal } : {}),
      }).then(checkOutcome, (err: unknown) => ({ ok: false, message: (err as Error).message }));
    });
  }

  async rollbackHosts(
    hosts: readonly FleetHost[],
    to: RollbackTarget | undefined,
    activationTimeout = DEFAULT_ACTIVATION_TIMEOUT,
  ): Promise<RollbackOutcome[]> {
    const generation = generationOnly(to, "ssh");
    return rollbackEachHost(hosts, (host) =>
      this.#rollbackOne(host, generation, activationTimeout),
    );
  }

  async #rollbackOne(
    host: FleetHost,
    generation: number | undefined,
    activationTimeout: number,
  ): Promise<RollbackOutcome> {
    const r = await runActivate(this.target(host), rollbackArgs(generation, activationTimeout), {
      timeoutSeconds: activationTimeout + SESSION_MARGIN,
    });
    return rollbackOutcome(r);
  }
}

/** How ssh reaches a host of the fleet. */
export function sshTarget(host: SshHost, settings: SshSettings): SshTarget {
  return {
    name: host.name,
    destination: sshDestination(host),
    user: sshUserOf(settings, host),
    configFile: settings.configFile,
    knownHosts: settings.knownHosts,
    ...(reachedBySudo(settings, host) ? { sudo: true } : {}),
  };
}

/**
 * activate.sh on one host over ssh, for an activation session. The preflight reads ssh's
 * settings for the host once; from them, the key exchange its settling logins prefer.
 */
export function sshActivationTransport(target: SshTarget): ActivationTransport {
  let settling = target;
  const runIt = (args: readonly string[], o: ScriptRunOptions) =>
    runActivate(o.fresh ? settling : target, args, {
      timeoutSeconds: o.timeoutSeconds,
      ...(o.fresh ? { fresh: true } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onLog ? { onLog: o.onLog } : {}),
      ...(o.secretsBundle === undefined
        ? {}
        : { variables: { [SECRETS_VARIABLE]: o.secretsBundle } }),
    });
  return {
    confirms: true,
    preflight: async (signal) => {
      const settings = await sshSettings(target);
      settling = await settlingTarget(target, settings);
      return checkNewConnection(settling, settings, signal);
    },
    activate: (activation, o) => runIt(activateArgs(activation), o),
    run: (command, o) => runIt(scriptArgs(command), o),
  };
}

/**
 * Copies the closure to the host over its ssh connection, within `timeoutSeconds`; returns an
 * error message on failure.
 */
async function copyClosure(
  target: SshTarget,
  path: string,
  timeoutSeconds: number,
  signal: AbortSignal | undefined,
): Promise<string | undefined> {
  try {
    // Nix's ssh uses the host's shared connection: it holds a place among the bounded masters.
    await withSharedConnection(target, async () => {
      const opts = await nixSshOpts(sshArgs(target).slice(0, -1));
      await withDeadline(timeoutSeconds * 1000, signal, (bounded) =>
        copyToHost(path, target.destination, opts, { signal: bounded }),
      );
    });
    return undefined;
  } catch (err) {
    if (signal?.aborted) return `${interruptReason(signal)} while copying`;
    return (err as Error).message;
  }
}
