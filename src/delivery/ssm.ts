// The ssm delivery mode: one SSM Run Command (the nixship document, activate.sh inside) per
// wave and request, with SSM's own rate controls (MaxConcurrency, MaxErrors) set from the
// rollout; the deployer polls the invocations, reads activate.sh's JSON from each one's output,
// runs the HTTP checks itself, and sends `rollback` to a host that fails them.
// Why one long file: it is the one class behind the Delivery seam for ssm, whose verbs share the
// wave's command, its throttling and its invocations; the SSM calls are ssm-client.ts's, the
// outcomes ssm-outcomes.ts's, reboots ssm-reboot.ts's, and what each command carries
// ssm-parameters.ts's.

import { randomBytes } from "node:crypto";
import type { CommandInvocation, SendCommandCommandInput } from "@aws-sdk/client-ssm";
import { encryptSecret, parseRecipient } from "../age/age.js";
import { bundleSha256, putSecretsBundle, secretsBundleKey } from "../channel/secrets-store.js";
import { OperationError, UsageError } from "../errors.js";
import type { FleetHost, SsmHost, SsmSettings } from "../fleet/fleet.js";
import { generationOnly, type RollbackTarget } from "../fleet/rollback-target.js";
import { DEFAULT_ACTIVATION_TIMEOUT, phaseMarker } from "../host/activation.js";
import {
  finishActivation,
  type RebootRequest,
  type ScriptRun,
} from "../host/activation-session.js";
import {
  type CheckOutcome,
  checkOutcome,
  hostStatus,
  pruneOutcome,
  resultMessage,
} from "../host/script-outcomes.js";
import { secretsBundle } from "../host/secrets-bundle.js";
import { describePrune } from "../status/prune-report.js";
import { readStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { mapLimit } from "../util/pool.js";
import {
  type Delivery,
  type DeliveryEvent,
  type DeployOutcome,
  type DeployRequest,
  type HostPhase,
  type HostStatus,
  type RollbackOutcome,
  rollbackEachHost,
  type WaveContext,
  type WaveHost,
} from "./delivery.js";
import { SsmCommands, type SsmCommandsOptions } from "./ssm-client.js";
import { resolveParameters, ssmDocument } from "./ssm-document.js";
import { faultMessage, WAVE_FAULTS } from "./ssm-faults.js";
import { describeTargets, type Group, groupWave, type Member, ssmHost } from "./ssm-groups.js";
import { InterruptedCommands } from "./ssm-interrupt.js";
import {
  activationResult,
  combineOutcomes,
  countsAsError,
  type FinishedInvocation,
  type InstanceOutcome,
  instanceOutcome,
  ssmFailure,
} from "./ssm-outcomes.js";
import {
  activateParameters,
  bootVerdictParameters,
  checkParameters,
  EMPTY_BUNDLE_URL,
  hostRecipients,
  pruneParameters,
  rollbackParameters,
  type SecretsUrl,
  STATUS_REPORT_SLACK,
  STATUS_TIMEOUT,
  sendTargets,
  statusParameters,
} from "./ssm-parameters.js";
import { finishSsmReboot } from "./ssm-reboot.js";

export interface SsmDeliveryOptions extends SsmCommandsOptions {
  /**
   * The fleet's store, where hosts' secrets bundles are put for the hosts to fetch through a
   * presigned URL (needed only when a request carries secrets; it must presign: S3).
   */
  readonly store?: ObjectStore;
  /**
   * `plan`: a host that cannot be asked (the plan role may not send SSM commands, or there are
   * no credentials) is shown from its status record in `store`, saying so.
   */
  readonly storedStatus?: boolean;
}

/** Hosts whose checks are sent at once (a wave's, each round of its bake). */
const CHECK_CONCURRENCY = 16;

export class SsmDelivery implements Delivery {
  private readonly settings: SsmSettings;
  private readonly commands: SsmCommands;
  readonly #store: ObjectStore | undefined;
  readonly #storedStatus: boolean;

  constructor(options: SsmDeliveryOptions) {
    this.settings = options.settings;
    this.#store = options.store;
    this.#storedStatus = options.storedStatus === true;
    this.commands = new SsmCommands(options);
  }

  /** Its SSM command goes on without the deployer: no window, no HTTP checks. */
  settlingText(request: DeployRequest): string {
    const checks = request.commandChecks.length > 0 ? "its command checks pass" : "it switches";
    return `its SSM command goes on on the host, within its ${this.settings.commandTimeout}s: it keeps the new system if ${checks}, else goes back, without the deployer's HTTP checks ('nixship plan' asks it what it runs)`;
  }

  async status(host: FleetHost, signal?: AbortSignal): Promise<HostStatus> {
    if (!this.#storedStatus) return this.#liveStatus(host, signal);
    const live = await this.#liveStatus(host, signal).catch((err: unknown) => {
      if (!(err instanceof OperationError)) throw err;
      return { reachable: false as const, error: err.message };
    });
    return live.reachable ? live : this.#storedRecord(host, live.error);
  }

  /** What the host last reported (a plan's stand-in for an answer it could not get). */
  async #storedRecord(host: FleetHost, why: string): Promise<HostStatus> {
    const record = this.#store === undefined ? undefined : await readStatus(this.#store, host.name);
    if (record === undefined) {
      return { reachable: false, error: `${why}; and it has no status record in the store` };
    }
    return {
      reachable: true,
      current: record.current ?? undefined,
      profile: undefined,
      generation: record.generation ?? undefined,
      generations: [],
      pending: undefined,
      secrets: record.secrets ?? undefined,
      stored: { at: record.updatedAt, why },
    };
  }

  async #liveStatus(host: FleetHost, signal?: AbortSignal): Promise<HostStatus> {
    const h = ssmHost(host);
    if (h.instanceId === undefined) {
      return {
        reachable: false,
        error: `status of a tag target: ${h.name} stands for every instance its targets match (${describeTargets(h.targets)}); ask one instance by its ID`,
      };
    }
    const sent = await this.commands.trySend(
      {
        InstanceIds: [h.instanceId],
        Parameters: statusParameters(),
        MaxConcurrency: "1",
        MaxErrors: "1",
        TimeoutSeconds: Math.min(this.settings.commandTimeout, STATUS_TIMEOUT),
        Comment: "nixship status",
      },
      `status of ${h.name}`,
    );
    if ("error" in sent) return { reachable: false, error: sent.error };
    // Its delivery and its run, each within STATUS_TIMEOUT, and a little for SSM to report.
    const done = await this.commands.waitFor(sent.commandId, [h.instanceId], undefined, signal, {
      seconds: 2 * STATUS_TIMEOUT + STATUS_REPORT_SLACK,
    });
    const inv = done.get(h.instanceId);
    const result = inv ? activationResult(inv) : undefined;
    const failure = inv ? ssmFailure(inv, this.settings) : "no answer";
    return hostStatus({ code: inv?.responseCode ?? -1, result, failure });
  }

  async deployWave(
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
    context: WaveContext,
  ): Promise<DeployOutcome[]> {
    const outcomes: (DeployOutcome | undefined)[] = wave.map(() => undefined);
    const finish = (index: number, outcome: DeployOutcome) => {
      outcomes[index] = outcome;
      emit({ type: "done", host: (wave[index] as WaveHost).host.name, outcome });
    };
    const groups = groupWave(wave);
    // Each group's secrets bundle, stored, and a URL to it that expires once its command can
    // no longer be running.
    const parameters = new Map<Group, Record<string, string[]>>();
    // A group whose hosts reboot, or set their next boot: the token its instances record their
    // pending boot under; a group whose pending boot is judged: that boot's token.
    const tokens = new Map<Group, string>();
    for (const group of groups) {
      const rounds = Math.ceil(group.members.length / Math.max(1, context.parallel));
      const secrets = await this.#secretsUrl(group, this.settings.commandTimeout * rounds + 300);
      const { request } = group;
      if (request.judgeBoot) tokens.set(group, request.judgeBoot.token);
      else if (request.reboot || request.recordBoot)
        tokens.set(group, `s${Date.now().toString(36)}${randomBytes(6).toString("hex")}`);
      parameters.set(
        group,
        activateParameters(this.settings.commandTimeout, request, secrets, tokens.get(group)),
      );
    }
    // Values the document would refuse fail the wave before anything is sent.
    const document = ssmDocument();
    for (const values of parameters.values()) {
      resolveParameters(
        document,
        Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.join(" ")])),
      );
    }
    const running: Promise<void>[] = [];
    let sentAny = false;
    // An interrupt starts no new instance: each command sent is cancelled where SSM has not
    // started it, and a group not sent yet is not sent.
    const interrupt = new InterruptedCommands(this.commands, context.signal, emit);
    try {
      for (const group of groups) {
        if (context.signal?.aborted) {
          const message = `${interruptReason(context.signal)} before its SSM command was sent: nothing changed`;
          for (const m of group.members) {
            finish(m.index, { status: "failed", phase: "connect", message, rolledBack: false });
          }
          continue;
        }
        const input: Omit<SendCommandCommandInput, "DocumentName"> = {
          ...(group.targets
            ? { Targets: sendTargets(group.targets) }
            : { InstanceIds: group.instanceIds }),
          Parameters: parameters.get(group),
          MaxConcurrency: String(Math.max(1, context.parallel)),
          MaxErrors: String(Math.max(0, context.failureBudget)),
          TimeoutSeconds: this.settings.commandTimeout,
          Comment: `nixship deploy ${group.request.path}`.slice(0, 100),
        };
        let commandId: string;
        try {
          commandId = await this.commands.send(input);
          sentAny = true;
        } catch (err) {
          // Before any command went out, a fault of the account or document fails the wave.
          if (!sentAny && err instanceof OperationError && WAVE_FAULTS.has(err.code)) throw err;
          const message = faultMessage(err);
          // A send SSM may have taken (its answer lost) may be running: not "nothing changed".
          const outcome: DeployOutcome =
            err instanceof OperationError && err.code === "ssm-send-unknown"
              ? { status: "failed", phase: "switch", message, rolledBack: false, settling: true }
              : { status: "failed", phase: "connect", message, rolledBack: false };
          for (const m of group.members) finish(m.index, outcome);
          continue;
        }
        const cancelled = interrupt.sent(
          commandId,
          group.members.map((m) => m.host.name),
        );
        for (const m of group.members) emit({ type: "phase", host: m.host.name, phase: "connect" });
        // The verdict after a boot (confirm-boot or abort-boot) is sent under the boot's token.
        const verdictToken = bootVerdict(group.request) ? tokens.get(group) : undefined;
        running.push(
          this.followGroup(group, commandId, context, emit, verdictToken, cancelled).then(
            (results) => {
              for (const [index, outcome] of results) finish(index, outcome);
            },
            (err: unknown) => {
              const message = `lost track of SSM command ${commandId}: ${faultMessage(err)}`;
              for (const m of group.members) {
                if (outcomes[m.index] === undefined) {
                  finish(m.index, {
                    status: "failed",
                    phase: "switch",
                    message,
                    rolledBack: false,
                    settling: true,
                  });
                }
              }
            },
          ),
        );
      }
      await Promise.all(running);
    } finally {
      interrupt.close();
    }
    return outcomes.map(
      (o) => o ?? { status: "failed", phase: "connect", message: "no outcome", rolledBack: false },
    );
  }

  async rollbackHosts(
    hosts: readonly FleetHost[],
    to: RollbackTarget | undefined,
    activationTimeout = DEFAULT_ACTIVATION_TIMEOUT,
  ): Promise<RollbackOutcome[]> {
    const generation = generationOnly(to, "ssm");
    return rollbackEachHost(hosts, (host) => this.rollbackOne(host, generation, activationTimeout));
  }

  /**
   * Each host's command checks again (the document's `check`, on every instance the host stands
   * for): a host passes when each of its instances does.
   */
  async runChecks(hosts: readonly WaveHost[], signal?: AbortSignal): Promise<CheckOutcome[]> {
    return mapLimit(hosts, CHECK_CONCURRENCY, async ({ host, request }): Promise<CheckOutcome> => {
      const parameters = checkParameters(request.commandChecks);
      if (parameters === undefined) return { ok: true };
      const h = ssmHost(host);
      const sent = await this.commands.trySend(
        {
          ...hostRecipients(h),
          Parameters: parameters,
          MaxConcurrency: "100%",
          MaxErrors: "100%",
          TimeoutSeconds: this.settings.commandTimeout,
          Comment: "nixship check (bake)",
        },
        `checks of ${h.name}`,
      );
      if ("error" in sent) return { ok: false, message: sent.error };
      const done = await this.commands.waitFor(
        sent.commandId,
        h.instanceId !== undefined ? [h.instanceId] : undefined,
        undefined,
        signal,
      );
      if (done.size === 0) {
        return { ok: false, message: `no instance answered the checks of ${h.name}` };
      }
      for (const inv of done.values()) {
        const result = activationResult(inv);
        const outcome = checkOutcome({
          code: inv.responseCode ?? 1,
          result,
          failure: result ? "" : ssmFailure(inv, this.settings),
        });
        if (!outcome.ok) {
          return done.size > 1
            ? { ...outcome, message: `${inv.instanceId}: ${outcome.message}` }
            : outcome;
        }
      }
      return { ok: true };
    });
  }

  async rollbackOne(
    host: FleetHost,
    generation: number | undefined,
    activationTimeout = DEFAULT_ACTIVATION_TIMEOUT,
  ): Promise<RollbackOutcome> {
    const h = ssmHost(host);
    const sent = await this.commands.trySend(
      {
        ...hostRecipients(h),
        Parameters: rollbackParameters(this.settings.commandTimeout, generation, activationTimeout),
        MaxConcurrency: "100%",
        MaxErrors: "100%",
        TimeoutSeconds: this.settings.commandTimeout,
        Comment: `nixship rollback${generation === undefined ? "" : ` to ${generation}`}`,
      },
      `rollback of ${h.name}`,
    );
    if ("error" in sent) return { status: "failed", message: sent.error };
    const done = await this.commands.waitFor(
      sent.commandId,
      h.instanceId !== undefined ? [h.instanceId] : undefined,
    );
    if (done.size === 0) {
      return { status: "failed", message: `no instance matched ${describeTargets(h.targets)}` };
    }
    const failures: string[] = [];
    let first: { generation: number; path: string } | undefined;
    for (const inv of done.values()) {
      const result = activationResult(inv);
      if (result && "command" in result && result.command === "rollback" && result.ok) {
        first ??= { generation: result.generation ?? 0, path: result.path ?? "" };
      } else {
        failures.push(
          `${inv.instanceId}: ${result && "command" in result ? resultMessage(result) : ssmFailure(inv, this.settings)}`,
        );
      }
    }
    if (failures.length > 0 || first === undefined) {
      return { status: "failed", message: failures.join("; ") || "no result" };
    }
    return { status: "rolled-back", ...first };
  }

  /**
   * Puts the group's secrets bundle in the store and presigns a GET of it for `seconds` (at
   * most 12 hours), sealed to the host's key (age): the command's parameters, which SSM keeps
   * and shows to whoever may list commands, hold nothing that fetches the bundle. The empty
   * bundle is not fetched (`none`). Undefined when the group's request carries no secrets.
   */
  async #secretsUrl(group: Group, seconds: number): Promise<SecretsUrl | undefined> {
    const secrets = group.request.secrets;
    if (secrets === undefined) return undefined;
    const host = (group.members[0] as Member).host.name;
    if (secrets.bundle === secretsBundle([])) {
      return { url: EMPTY_BUNDLE_URL, sha256: bundleSha256(secrets.bundle) };
    }
    if (secrets.hostKey === undefined) {
      throw new UsageError(
        `ssm host ${host} gets secrets, and its host key is not known: the URL of its bundle is sealed to that key`,
        `give the host's "hostKey" in the fleet file, or pin it ('nixship secrets rekey')`,
      );
    }
    const store = this.#store;
    if (store?.presignGet === undefined) {
      throw new UsageError(
        `ssm hosts get their secrets through a presigned URL to the fleet's store, and ${store === undefined ? "the fleet has no cache store" : `${store.url} cannot presign one`}`,
        'use an s3:// cache ("cache.url") for fleets with ssm hosts and secrets',
      );
    }
    // Written now whatever is there: no release names it, so its age is what keeps it from
    // `cache gc` while the command may still fetch it.
    const sha256 = await putSecretsBundle(store, host, secrets.bundle, { fresh: true });
    const url = await store.presignGet(secretsBundleKey(host, sha256), Math.min(seconds, 43_200));
    const recipient = parseRecipient(secrets.hostKey, `the host key of ${host}`);
    const sealed = await encryptSecret(new TextEncoder().encode(url), [recipient]);
    return { url: `age:${Buffer.from(sealed).toString("base64")}`, sha256 };
  }

  /** Polls one deploy command to its end; each member host's outcome by wave index. */
  private async followGroup(
    group: Group,
    commandId: string,
    context: WaveContext,
    emit: (event: DeliveryEvent) => void,
    rebootToken: string | undefined,
    /** Instances an interrupt cancelled the command on before they started it. */
    cancelled: ReadonlySet<string>,
  ): Promise<Map<number, DeployOutcome>> {
    const phases = new Map<string, HostPhase>(group.members.map((m) => [m.host.name, "connect"]));
    const phase = (host: string, p: HostPhase) => {
      if (phases.get(host) === p) return;
      phases.set(host, p);
      emit({ type: "phase", host, phase: p });
    };
    // A pending boot's judgement runs the checks (after-boot); anything else switches.
    const running: HostPhase = group.request.judgeBoot ? "health" : "switch";
    const onProgress = (invocations: readonly CommandInvocation[]) => {
      for (const m of group.members) {
        const mine = invocations.filter(
          (i) => group.targets !== undefined || i.InstanceId === m.host.instanceId,
        );
        if (mine.some((i) => i.Status === "InProgress")) phase(m.host.name, running);
        else if (mine.some((i) => i.Status === "Pending" || i.Status === "Delayed")) {
          phase(m.host.name, "connect");
        }
      }
    };
    const results = new Map<number, DeployOutcome>();
    const finishing: Promise<void>[] = [];
    const onFinished = (
      inv: FinishedInvocation,
      finished: ReadonlyMap<string, FinishedInvocation>,
    ) => {
      if (group.targets !== undefined) return;
      for (const m of group.members.filter((x) => x.host.instanceId === inv.instanceId)) {
        const errors = [...finished.values()].filter(countsAsError).length;
        finishing.push(
          this.finishHost(m.host, m.request, [inv], errors, emit, context, {
            rebootToken,
            cancelled,
          }).then((o) => {
            results.set(m.index, o);
          }),
        );
      }
    };
    const done = await this.commands.waitFor(
      commandId,
      group.targets === undefined ? group.instanceIds : undefined,
      { onProgress, onFinished },
      undefined,
      // A rebooting instance's invocation lasts its reboot too; its instances run `parallel`
      // at a time (the command's MaxConcurrency).
      {
        extraSeconds: group.request.reboot?.timeout ?? 0,
        concurrency: Math.max(1, context.parallel),
      },
    );
    if (group.targets !== undefined) {
      const member = group.members[0] as Member;
      const all = [...done.values()];
      const errors = all.filter(countsAsError).length;
      results.set(
        member.index,
        await this.finishHost(member.host, member.request, all, errors, emit, context, {
          rebootToken,
          cancelled,
        }),
      );
    }
    await Promise.all(finishing);
    return results;
  }

  /** From finished invocations to the host's outcome: HTTP checks, and rollback on failure. */
  private async finishHost(
    host: SsmHost,
    request: DeployRequest,
    invocations: readonly FinishedInvocation[],
    errors: number,
    emit: (event: DeliveryEvent) => void,
    context: WaveContext,
    {
      rebootToken,
      cancelled,
    }: { readonly rebootToken: string | undefined; readonly cancelled: ReadonlySet<string> },
  ): Promise<DeployOutcome> {
    const log = (line: string) => emit({ type: "log", host: host.name, line });
    if (invocations.length === 0) {
      return {
        status: "failed",
        phase: "connect",
        message: `no instance matched ${describeTargets(host.targets)}`,
        rolledBack: false,
      };
    }
    const outcomes = invocations.map((inv) => {
      for (const line of inv.stderr.split("\n").filter((l) => l.trim())) {
        // Phase markers tell a live session where the host is; here the run is over.
        if (phaseMarker(line) !== undefined) continue;
        log(`${host.targets ? `${inv.instanceId}: ` : ""}${line.replace(/^activate: /, "")}`);
      }
      return instanceOutcome(inv, this.settings, {
        maxErrorsReached: errors > context.failureBudget,
        ...(cancelled.has(inv.instanceId)
          ? { cancelledBeforeStart: interruptReason(context.signal) }
          : {}),
      });
    });
    const combined = combineOutcomes(host, outcomes);
    const hooks = {
      phase: (phase: HostPhase) => emit({ type: "phase", host: host.name, phase }),
      log,
      ...(context.signal ? { signal: context.signal } : {}),
    };
    const reboot = bootVerdict(request);
    if (rebootToken !== undefined && reboot !== undefined) {
      const ids = outcomes.map((o) => o.instanceId);
      const { keepGenerations } = request;
      return finishSsmReboot(
        combined,
        request,
        reboot,
        (verb) =>
          this.runOnInstances(
            ids,
            bootVerdictParameters(this.settings.commandTimeout, verb, rebootToken, reboot.rollback),
            `nixship ${verb} ${request.path}`,
          ),
        keepGenerations
          ? () => this.pruneInstances(outcomes, keepGenerations, log).then(pruneOutcome)
          : undefined,
        hooks,
      );
    }
    if (combined.status === "failed" && host.targets !== undefined) {
      // The host is one thing: the instances that switched go back with it.
      const switched = outcomes.filter((o) => o.outcome.status === "activated");
      if (switched.length === 0) return combined;
      hooks.phase("rollback");
      const failure = await this.rollBackInstances(switched, request.activationTimeout);
      return {
        ...combined,
        // An instance whose end is not known may run the new system yet.
        rolledBack: failure === "" && combined.settling !== true,
        message: `${combined.message}; ${
          failure === ""
            ? `the ${switched.length} that switched went back`
            : `sending back the ${switched.length} that switched failed: ${failure}`
        }`,
      };
    }
    if (combined.status !== "activated") return combined;
    const single = outcomes.length === 1 ? outcomes[0]?.result : undefined;
    const previousGeneration =
      single && "command" in single && single.command === "activate" && single.ok
        ? (single.previousGeneration ?? undefined)
        : undefined;
    // The activation ran as part of the wave's command; the session goes on from its result.
    return finishActivation(
      {
        run: async (command) => {
          switch (command.verb) {
            case "prune":
              return this.pruneInstances(outcomes, command.keep, log);
            case "rollback": {
              const failure = await this.rollBackInstances(outcomes, request.activationTimeout);
              return { code: failure ? 7 : 0, result: undefined, failure };
            }
            default:
              // The wave's command had no confirmation window: nothing else is asked of it.
              return { code: 2, result: undefined, failure: `ssm sends no '${command.verb}'` };
          }
        },
      },
      request,
      { ...combined, previousGeneration, awaitingToken: undefined },
      hooks,
    );
  }

  /**
   * Sends `rollback` to instances that activated, back to the generation each left; why any
   * failed, or "" when all went back.
   */
  private async rollBackInstances(
    outcomes: readonly InstanceOutcome[],
    activationTimeout: number,
  ): Promise<string> {
    const byGeneration = new Map<string, string[]>();
    for (const o of outcomes) {
      const r = o.result;
      const gen =
        r && "command" in r && r.command === "activate" && r.ok && r.previousGeneration !== null
          ? String(r.previousGeneration)
          : "";
      byGeneration.set(gen, [...(byGeneration.get(gen) ?? []), o.instanceId]);
    }
    const failures: string[] = [];
    for (const [gen, ids] of byGeneration) {
      try {
        const commandId = await this.commands.send({
          InstanceIds: ids,
          Parameters: rollbackParameters(
            this.settings.commandTimeout,
            gen === "" ? undefined : Number(gen),
            activationTimeout,
          ),
          MaxConcurrency: "100%",
          MaxErrors: "100%",
          TimeoutSeconds: this.settings.commandTimeout,
          Comment: "nixship rollback after a failed health check",
        });
        const done = await this.commands.waitFor(commandId, ids);
        for (const id of ids) {
          const inv = done.get(id);
          const r = inv ? activationResult(inv) : undefined;
          if (r !== undefined && "command" in r && r.command === "rollback" && r.ok) continue;
          failures.push(
            r
              ? `${id}: ${resultMessage(r)}`
              : inv
                ? ssmFailure(inv, this.settings)
                : `${id}: no answer`,
          );
        }
      } catch (err) {
        failures.push(`${ids.join(", ")}: ${faultMessage(err)}`);
      }
    }
    return failures.join("; ");
  }

  /**
   * Sends `prune` to the instances that activated; with several, each one's report is logged
   * and the first failure (else the first report) stands for the host.
   */
  private async pruneInstances(
    outcomes: readonly InstanceOutcome[],
    keep: number,
    log: (line: string) => void,
  ): Promise<ScriptRun> {
    const ids = outcomes.map((o) => o.instanceId);
    const runs = await this.runOnInstances(
      ids,
      pruneParameters(this.settings.commandTimeout, keep),
      `nixship prune to ${keep} generations`,
    );
    if (ids.length > 1) {
      for (const [i, run] of runs.entries()) log(`${ids[i]}: ${describePrune(pruneOutcome(run))}`);
    }
    return runs.find((r) => !pruneOutcome(r).ok) ?? (runs[0] as ScriptRun);
  }

  /**
   * Sends the document with `parameters` to these instances (all at once) and waits for each
   * one's run: in the order of `ids`; an SSM fault is every run's failure.
   */
  private async runOnInstances(
    ids: readonly string[],
    parameters: Record<string, string[]>,
    comment: string,
  ): Promise<ScriptRun[]> {
    try {
      const commandId = await this.commands.send({
        InstanceIds: [...ids],
        Parameters: parameters,
        MaxConcurrency: "100%",
        MaxErrors: "100%",
        TimeoutSeconds: this.settings.commandTimeout,
        Comment: comment.slice(0, 100),
      });
      const done = await this.commands.waitFor(commandId, ids);
      return ids.map((id): ScriptRun => {
        const inv = done.get(id);
        if (inv === undefined) return { code: 1, result: undefined, failure: `${id}: no answer` };
        const result = activationResult(inv);
        return result
          ? { code: inv.responseCode ?? 1, result, failure: "" }
          : {
              code: inv.responseCode ?? 1,
              result: undefined,
              failure: ssmFailure(inv, this.settings),
            };
      });
    } catch (err) {
      const failure = faultMessage(err);
      return ids.map(() => ({ code: 1, result: undefined, failure }));
    }
  }
}

/**
 * The reboot whose boot a request ends with a verdict on (confirm-boot or abort-boot): its own
 * reboot, or the pending boot it judges; undefined for any other request.
 */
function bootVerdict(request: DeployRequest): RebootRequest | undefined {
  return request.judgeBoot?.reboot ?? request.reboot;
}
