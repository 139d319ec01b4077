// The ssm delivery mode: one SSM Run Command (the nixship document, activate.sh inside) per
// wave and request, with SSM's own rate controls (MaxConcurrency, MaxErrors) set from the
// rollout; the deployer polls the invocations, reads activate.sh's JSON from each one's output,
// runs the HTTP checks itself, and sends `rollback` to a host that fails them.
import {
  type CommandInvocation,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type SendCommandCommandInput,
  SSMClient,
} from "@aws-sdk/client-ssm";
import { NixshipError, OperationError } from "../errors.js";
import type { FleetHost, SsmHost, SsmSettings, SsmTarget } from "../fleet/fleet.js";
import { type ActivationResult, parseActivationResult } from "../host/activation.js";
import { httpCheck } from "../host/http-check.js";
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
import { encodeHealthChecks, resolveParameters, ssmDocument } from "./ssm-document.js";

export interface SsmDeliveryOptions {
  readonly settings: SsmSettings;
  /** Default: a client for `settings.region` (undefined: the SDK's default chain). */
  readonly client?: SSMClient;
  /** Milliseconds between polls of a running command. */
  readonly pollInterval?: number;
  /** Milliseconds before the first retry of a throttled call (doubling, at most 20 s). */
  readonly throttleDelay?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

/** SendCommand takes at most this many instance IDs. */
const MAX_INSTANCE_IDS = 50;
const THROTTLE_ATTEMPTS = 8;
/** Seconds a status command may wait for delivery and run. */
const STATUS_TIMEOUT = 60;
const NOT_STARTED = "not started: SSM stopped the command after MaxErrors was reached";

/** One instance's finished invocation: what SSM says, and what activate.sh printed. */
export interface FinishedInvocation {
  readonly instanceId: string;
  readonly status: string;
  readonly details: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly responseCode: number | undefined;
}

/** A finished invocation as one instance's deploy outcome, and activate.sh's result if any. */
export interface InstanceOutcome {
  readonly instanceId: string;
  readonly outcome: DeployOutcome;
  readonly result: ActivationResult | undefined;
}

export class SsmDelivery implements Delivery {
  private readonly settings: SsmSettings;
  private readonly client: SSMClient;
  private readonly pollInterval: number;
  private readonly throttleDelay: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(options: SsmDeliveryOptions) {
    this.settings = options.settings;
    this.client =
      options.client ??
      new SSMClient(options.settings.region ? { region: options.settings.region } : {});
    this.pollInterval = options.pollInterval ?? 2000;
    this.throttleDelay = options.throttleDelay ?? 1000;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.now = options.now ?? Date.now;
  }

  async status(host: FleetHost, signal?: AbortSignal): Promise<HostStatus> {
    const h = ssmHost(host);
    if (h.instanceId === undefined) {
      return {
        reachable: false,
        error: `status of a tag target: ${h.name} stands for every instance its targets match (${describeTargets(h.targets)}); ask one instance by its ID`,
      };
    }
    const sent = await this.trySend(
      {
        InstanceIds: [h.instanceId],
        Parameters: { Command: ["status"], ExecutionTimeout: [String(STATUS_TIMEOUT)] },
        MaxConcurrency: "1",
        MaxErrors: "1",
        TimeoutSeconds: Math.min(this.settings.commandTimeout, STATUS_TIMEOUT),
        Comment: "nixship status",
      },
      `status of ${h.name}`,
    );
    if ("error" in sent) return { reachable: false, error: sent.error };
    const done = await this.waitFor(sent.commandId, [h.instanceId], undefined, signal);
    const inv = done.get(h.instanceId);
    const result = inv ? activationResult(inv) : undefined;
    if (inv === undefined || result === undefined || !("command" in result)) {
      return { reachable: false, error: inv ? ssmFailure(inv, this.settings) : "no answer" };
    }
    if (result.command !== "status") return { reachable: false, error: resultMessage(result) };
    return {
      reachable: true,
      current: result.current ?? undefined,
      profile: result.profile ?? undefined,
      generation: result.generation ?? undefined,
      generations: result.generations,
      pending: result.pending ?? undefined,
    };
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
    // Values the document would refuse fail the wave before anything is sent.
    const document = ssmDocument();
    for (const group of groups) {
      const values = this.activateParameters(group.request);
      resolveParameters(
        document,
        Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.join(" ")])),
      );
    }
    const running: Promise<void>[] = [];
    let sentAny = false;
    for (const group of groups) {
      const input: Omit<SendCommandCommandInput, "DocumentName"> = {
        ...(group.targets
          ? { Targets: group.targets.map((t) => ({ Key: t.key, Values: [...t.values] })) }
          : { InstanceIds: group.instanceIds }),
        Parameters: this.activateParameters(group.request),
        MaxConcurrency: String(Math.max(1, context.parallel)),
        MaxErrors: String(Math.max(0, context.failureBudget)),
        TimeoutSeconds: this.settings.commandTimeout,
        Comment: `nixship deploy ${group.request.path}`.slice(0, 100),
      };
      let commandId: string;
      try {
        commandId = await this.send(input);
        sentAny = true;
      } catch (err) {
        // Before any command went out, a fault of the account or document fails the wave.
        if (!sentAny && err instanceof OperationError && WAVE_FAULTS.has(err.code)) throw err;
        const message = faultMessage(err);
        for (const m of group.members) {
          finish(m.index, { status: "failed", phase: "connect", message, rolledBack: false });
        }
        continue;
      }
      for (const m of group.members) emit({ type: "phase", host: m.host.name, phase: "connect" });
      running.push(
        this.followGroup(group, commandId, context, emit).then(
          (results) => {
            for (const [index, outcome] of results) finish(index, outcome);
          },
          (err: unknown) => {
            const message = `lost track of SSM command ${commandId}: ${faultMessage(err)}`;
            for (const m of group.members) {
              if (outcomes[m.index] === undefined) {
                finish(m.index, { status: "failed", phase: "switch", message, rolledBack: false });
              }
            }
          },
        ),
      );
    }
    await Promise.all(running);
    return outcomes.map(
      (o) => o ?? { status: "failed", phase: "connect", message: "no outcome", rolledBack: false },
    );
  }

  rollbackHosts(
    hosts: readonly FleetHost[],
    generation: number | undefined,
  ): Promise<RollbackOutcome[]> {
    return rollbackEachHost(hosts, (host) => this.rollbackOne(host, generation));
  }

  async rollbackOne(host: FleetHost, generation: number | undefined): Promise<RollbackOutcome> {
    const h = ssmHost(host);
    const sent = await this.trySend(
      {
        ...(h.instanceId !== undefined
          ? { InstanceIds: [h.instanceId] }
          : { Targets: (h.targets ?? []).map((t) => ({ Key: t.key, Values: [...t.values] })) }),
        Parameters: this.rollbackParameters(generation),
        MaxConcurrency: "100%",
        MaxErrors: "100%",
        TimeoutSeconds: this.settings.commandTimeout,
        Comment: `nixship rollback${generation === undefined ? "" : ` to ${generation}`}`,
      },
      `rollback of ${h.name}`,
    );
    if ("error" in sent) return { status: "failed", message: sent.error };
    const done = await this.waitFor(
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

  /** SendCommand's Parameters for an activation: empty values are left to the defaults. */
  activateParameters(request: DeployRequest): Record<string, string[]> {
    const values: Record<string, string> = {
      Command: "activate",
      StorePath: request.path,
      Action: request.action,
      Substituters: request.substituters.join(" "),
      TrustedPublicKeys: request.trustedKeys.join(" "),
      HealthChecks: encodeHealthChecks(request.commandChecks),
      ExecutionTimeout: String(this.settings.commandTimeout),
    };
    return Object.fromEntries(
      Object.entries(values)
        .filter(([, v]) => v !== "")
        .map(([k, v]) => [k, [v]]),
    );
  }

  private rollbackParameters(generation: number | undefined): Record<string, string[]> {
    return {
      Command: ["rollback"],
      ExecutionTimeout: [String(this.settings.commandTimeout)],
      ...(generation === undefined ? {} : { Generation: [String(generation)] }),
    };
  }

  /** Polls one deploy command to its end; each member host's outcome by wave index. */
  private async followGroup(
    group: Group,
    commandId: string,
    context: WaveContext,
    emit: (event: DeliveryEvent) => void,
  ): Promise<Map<number, DeployOutcome>> {
    const phases = new Map<string, HostPhase>(group.members.map((m) => [m.host.name, "connect"]));
    const phase = (host: string, p: HostPhase) => {
      if (phases.get(host) === p) return;
      phases.set(host, p);
      emit({ type: "phase", host, phase: p });
    };
    const onProgress = (invocations: readonly CommandInvocation[]) => {
      for (const m of group.members) {
        const mine = invocations.filter(
          (i) => group.targets !== undefined || i.InstanceId === m.host.instanceId,
        );
        if (mine.some((i) => i.Status === "InProgress")) phase(m.host.name, "switch");
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
          this.finishHost(m.host, group.request, [inv], errors, emit, context).then((o) => {
            results.set(m.index, o);
          }),
        );
      }
    };
    const done = await this.waitFor(
      commandId,
      group.targets === undefined ? group.instanceIds : undefined,
      { onProgress, onFinished },
    );
    if (group.targets !== undefined) {
      const member = group.members[0] as Member;
      const all = [...done.values()];
      const errors = all.filter(countsAsError).length;
      results.set(
        member.index,
        await this.finishHost(member.host, group.request, all, errors, emit, context),
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
        log(`${host.targets ? `${inv.instanceId}: ` : ""}${line.replace(/^activate: /, "")}`);
      }
      return instanceOutcome(inv, this.settings, errors > context.failureBudget);
    });
    const combined = combineOutcomes(host, outcomes);
    if (combined.status !== "activated") return combined;
    if (
      request.httpChecks.length === 0 ||
      request.action === "boot" ||
      request.action === "dry-activate"
    ) {
      emit({ type: "phase", host: host.name, phase: "done" });
      return combined;
    }
    emit({ type: "phase", host: host.name, phase: "health" });
    for (const check of request.httpChecks) {
      const verdict = await httpCheck(check.url, check.expectStatus, check.timeout);
      log(verdict.message);
      if (!verdict.ok) {
        emit({ type: "phase", host: host.name, phase: "rollback" });
        const rolledBack = await this.rollBackInstances(outcomes);
        return { status: "failed", phase: "health", message: verdict.message, rolledBack };
      }
    }
    emit({ type: "phase", host: host.name, phase: "done" });
    return combined;
  }

  /** Sends `rollback` to instances that activated, back to the generation each left. */
  private async rollBackInstances(outcomes: readonly InstanceOutcome[]): Promise<boolean> {
    const byGeneration = new Map<string, string[]>();
    for (const o of outcomes) {
      const r = o.result;
      const gen =
        r && "command" in r && r.command === "activate" && r.ok && r.previousGeneration !== null
          ? String(r.previousGeneration)
          : "";
      byGeneration.set(gen, [...(byGeneration.get(gen) ?? []), o.instanceId]);
    }
    let all = true;
    for (const [gen, ids] of byGeneration) {
      try {
        const commandId = await this.send({
          InstanceIds: ids,
          Parameters: this.rollbackParameters(gen === "" ? undefined : Number(gen)),
          MaxConcurrency: "100%",
          MaxErrors: "100%",
          TimeoutSeconds: this.settings.commandTimeout,
          Comment: "nixship rollback after a failed health check",
        });
        const done = await this.waitFor(commandId, ids);
        for (const id of ids) {
          const inv = done.get(id);
          const r = inv ? activationResult(inv) : undefined;
          const ok = r !== undefined && "command" in r && r.command === "rollback" && r.ok;
          all &&= ok;
        }
      } catch {
        all = false;
      }
    }
    return all;
  }

  /**
   * Polls a command until each expected instance (or, for targets, every instance SSM
   * resolved) has a terminal invocation, or the command itself ended; returns the finished
   * invocations by instance. An expected instance with none when the command ended never
   * started ("Terminated": SSM stopped sending after MaxErrors).
   */
  private async waitFor(
    commandId: string,
    instanceIds: readonly string[] | undefined,
    hooks: {
      onProgress?: (invocations: readonly CommandInvocation[]) => void;
      /** `finished` holds every invocation finished so far, this one included. */
      onFinished?: (
        inv: FinishedInvocation,
        finished: ReadonlyMap<string, FinishedInvocation>,
      ) => void;
    } = {},
    signal?: AbortSignal,
  ): Promise<Map<string, FinishedInvocation>> {
    const finished = new Map<string, FinishedInvocation>();
    const deadline =
      this.now() + (2 * this.settings.commandTimeout + 300) * 1000 + 50 * this.pollInterval;
    const settle = (invs: readonly FinishedInvocation[]) => {
      for (const inv of invs) finished.set(inv.instanceId, inv);
      for (const inv of invs) hooks.onFinished?.(inv, finished);
    };
    for (;;) {
      const invocations = await this.listInvocations(commandId);
      hooks.onProgress?.(invocations);
      const ended = invocations.filter(
        (inv) => inv.InstanceId !== undefined && !finished.has(inv.InstanceId) && isTerminal(inv),
      );
      settle(await Promise.all(ended.map((inv) => this.finished(commandId, inv))));
      let complete = false;
      if (invocations.every(isTerminal)) {
        if (instanceIds?.every((id) => finished.has(id))) {
          complete = true;
        } else {
          const command = await this.getCommand(commandId);
          const target = command?.TargetCount ?? 0;
          // A command not listed yet (SSM is eventually consistent) is still to come.
          complete =
            command !== undefined &&
            (TERMINAL_COMMAND.has(command.Status ?? "") ||
              (instanceIds === undefined && target > 0 && finished.size >= target));
        }
      }
      const unfinished = (status: string) =>
        [...new Set([...invocations.map((i) => i.InstanceId), ...(instanceIds ?? [])])]
          .filter((id): id is string => id !== undefined && !finished.has(id))
          .map((id) => missing(id, status));
      if (complete) {
        settle(unfinished("Terminated"));
        return finished;
      }
      if (this.now() > deadline || signal?.aborted) {
        settle(unfinished("Unfinished"));
        return finished;
      }
      await this.sleep(this.pollInterval);
    }
  }

  private async listInvocations(commandId: string): Promise<CommandInvocation[]> {
    const all: CommandInvocation[] = [];
    let token: string | undefined;
    do {
      const input = {
        CommandId: commandId,
        MaxResults: 50,
        ...(token ? { NextToken: token } : {}),
      };
      const page = await this.call(() =>
        this.client.send(new ListCommandInvocationsCommand(input)),
      );
      all.push(...(page.CommandInvocations ?? []));
      token = page.NextToken || undefined;
    } while (token !== undefined);
    return all;
  }

  private async getCommand(commandId: string) {
    const page = await this.call(() =>
      this.client.send(new ListCommandsCommand({ CommandId: commandId })),
    );
    return page.Commands?.[0];
  }

  /** The invocation's output: stdout holds activate.sh's JSON on its last line. */
  private async finished(commandId: string, inv: CommandInvocation): Promise<FinishedInvocation> {
    const instanceId = inv.InstanceId as string;
    const base = {
      instanceId,
      status: inv.Status ?? "",
      details: inv.StatusDetails ?? inv.Status ?? "",
    };
    try {
      const out = await this.call(() =>
        this.client.send(
          new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
        ),
      );
      return {
        ...base,
        stdout: out.StandardOutputContent ?? "",
        stderr: out.StandardErrorContent ?? "",
        responseCode: out.ResponseCode,
      };
    } catch (err) {
      return { ...base, stdout: "", stderr: `(no output: ${faultMessage(err)})`, responseCode: -1 };
    }
  }

  /** SendCommand; the command's ID. */
  private async send(input: Omit<SendCommandCommandInput, "DocumentName">): Promise<string> {
    const out = await this.call(() =>
      this.client.send(
        new SendCommandCommand({ DocumentName: this.settings.documentName, ...input }),
      ),
    );
    const id = out.Command?.CommandId;
    if (!id) throw new OperationError("ssm-failed", "SendCommand returned no command ID");
    return id;
  }

  /** SendCommand, with faults of one host as data and faults of the account thrown. */
  private async trySend(
    input: Omit<SendCommandCommandInput, "DocumentName">,
    what: string,
  ): Promise<{ commandId: string } | { error: string }> {
    try {
      return { commandId: await this.send(input) };
    } catch (err) {
      if (err instanceof OperationError && WAVE_FAULTS.has(err.code)) throw err;
      return { error: `${what}: ${faultMessage(err)}` };
    }
  }

  /** One SDK call; throttling is retried with backoff, other faults become OperationErrors. */
  private async call<T>(request: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (err) {
        if (isThrottling(err) && attempt < THROTTLE_ATTEMPTS) {
          await this.sleep(Math.min(this.throttleDelay * 2 ** (attempt - 1), 20_000));
          continue;
        }
        throw ssmFault(err, this.settings);
      }
    }
  }
}

interface Member {
  readonly index: number;
  readonly host: SsmHost;
}

/** Hosts that share one SendCommand: by instance ID, or one targets host alone. */
interface Group {
  readonly request: DeployRequest;
  readonly members: readonly Member[];
  readonly instanceIds: string[];
  readonly targets: readonly SsmTarget[] | undefined;
}

/** One group per distinct request (targets hosts alone), at most 50 instance IDs each. */
export function groupWave(wave: readonly WaveHost[]): Group[] {
  const groups: Group[] = [];
  const open = new Map<string, Group>();
  for (const [index, { host, request }] of wave.entries()) {
    const h = ssmHost(host);
    if (h.instanceId === undefined) {
      groups.push({ request, members: [{ index, host: h }], instanceIds: [], targets: h.targets });
      continue;
    }
    const key = JSON.stringify([
      request.path,
      request.action,
      request.substituters,
      request.trustedKeys,
      request.commandChecks.map((c) => [c.run, c.timeout]),
    ]);
    let group = open.get(key);
    const full =
      group !== undefined &&
      !group.instanceIds.includes(h.instanceId) &&
      group.instanceIds.length >= MAX_INSTANCE_IDS;
    if (group === undefined || full) {
      group = { request, members: [], instanceIds: [], targets: undefined };
      groups.push(group);
      open.set(key, group);
    }
    (group.members as Member[]).push({ index, host: h });
    if (!group.instanceIds.includes(h.instanceId)) group.instanceIds.push(h.instanceId);
  }
  return groups;
}

function ssmHost(host: FleetHost): SsmHost {
  if (host.delivery !== "ssm") {
    throw new Error(`${host.name} is delivered by ${host.delivery}, not ssm`);
  }
  return host;
}

function describeTargets(targets: readonly SsmTarget[] | undefined): string {
  return (targets ?? []).map((t) => `${t.key}=${t.values.join(",")}`).join(" and ") || "nothing";
}

const TERMINAL_COMMAND = new Set(["Success", "Failed", "TimedOut", "Cancelled"]);
const TERMINAL_DETAILS = new Set([
  "Success",
  "Failed",
  "Cancelled",
  "Canceled",
  "Undeliverable",
  "Terminated",
  "Delivery Timed Out",
  "Execution Timed Out",
  "Access Denied",
  "Incomplete",
  "Rate Exceeded",
  "No Instances In Tag",
]);

function isTerminal(inv: CommandInvocation): boolean {
  return (
    TERMINAL_COMMAND.has(inv.Status ?? "") ||
    TERMINAL_DETAILS.has(inv.StatusDetails ?? "") ||
    // An invocation status this version does not know: only the known live ones keep waiting.
    !["Pending", "InProgress", "Delayed", "Cancelling"].includes(inv.Status ?? "Pending")
  );
}

/** An instance SSM gave no finished invocation for. */
function missing(instanceId: string, status: string): FinishedInvocation {
  return { instanceId, status, details: status, stdout: "", stderr: "", responseCode: undefined };
}

function activationResult(inv: FinishedInvocation): ActivationResult | undefined {
  if (!inv.stdout.trim()) return undefined;
  try {
    return parseActivationResult(inv.stdout, inv.instanceId);
  } catch {
    return undefined;
  }
}

function resultMessage(result: ActivationResult): string {
  if ("message" in result && result.message) return result.message;
  return "result" in result ? `result ${result.result}` : "no message";
}

/** Invocations that count against MaxErrors (SSM: failures and execution timeouts). */
function countsAsError(inv: FinishedInvocation): boolean {
  return (
    inv.details === "Failed" ||
    inv.details === "Execution Timed Out" ||
    (inv.details === inv.status && (inv.status === "Failed" || inv.status === "TimedOut"))
  );
}

/** Why SSM did not run activate.sh to a result on an instance, naming the status. */
function ssmFailure(inv: FinishedInvocation, settings: SsmSettings): string {
  const id = inv.instanceId;
  const status = inv.details && inv.details !== inv.status ? inv.details : inv.status;
  switch (status) {
    case "Undeliverable":
      return `${id}: SSM could not deliver the command (Undeliverable): the instance is stopped, gone, or its SSM agent is not registered`;
    case "Delivery Timed Out":
      return `${id}: SSM could not deliver the command within ${settings.commandTimeout}s (Delivery Timed Out): is its SSM agent online?`;
    case "Execution Timed Out":
    case "TimedOut":
      return `${id}: SSM timed out after ${settings.commandTimeout}s (${status})`;
    case "Access Denied":
      return `${id}: SSM was denied access to run the command (Access Denied)`;
    case "Terminated":
      return `${id}: ${NOT_STARTED}`;
    case "Cancelled":
    case "Canceled":
      return `${id}: SSM cancelled the command (${status})`;
    case "Unfinished":
      return `${id}: SSM reported no end for the command`;
    default: {
      const tail = inv.stderr.trim().split("\n").slice(-3).join(" | ");
      const code = inv.responseCode !== undefined && inv.responseCode >= 0 ? inv.responseCode : "?";
      return `${id}: SSM reported ${status || "no status"} (exit ${code})${tail ? `: ${tail}` : ""}`;
    }
  }
}

/** One instance's outcome, from SSM's status and activate.sh's JSON result. */
export function instanceOutcome(
  inv: FinishedInvocation,
  settings: SsmSettings,
  maxErrorsReached: boolean,
): InstanceOutcome {
  const result = activationResult(inv);
  const failed = (phase: HostPhase, message: string, rolledBack = false): InstanceOutcome => ({
    instanceId: inv.instanceId,
    result,
    outcome: { status: "failed", phase, message, rolledBack },
  });
  if (result !== undefined && "command" in result && result.command === "activate") {
    if (result.ok) {
      return {
        instanceId: inv.instanceId,
        result,
        outcome: {
          status: "activated",
          generation: result.generation ?? undefined,
          previous: result.previous ?? undefined,
        },
      };
    }
    return failed(result.phase, result.message, result.rolledBack);
  }
  if (result !== undefined && !result.ok) return failed("connect", resultMessage(result));
  const status = inv.details && inv.details !== inv.status ? inv.details : inv.status;
  if (status === "Success") {
    return failed("connect", `${inv.instanceId}: the command succeeded but gave no JSON result`);
  }
  const stopped =
    status === "Terminated" ||
    ((status === "Cancelled" || status === "Canceled") && maxErrorsReached);
  if (stopped) return failed("connect", `${inv.instanceId}: ${NOT_STARTED}`);
  // Timed out while running: most likely in the switch (realising is bounded by the cache).
  const running = status === "Execution Timed Out" || status === "TimedOut";
  return failed(running ? "switch" : "connect", ssmFailure(inv, settings));
}

/** A host's outcome from its instances': activated only if every instance activated. */
function combineOutcomes(host: SsmHost, outcomes: readonly InstanceOutcome[]): DeployOutcome {
  const first = outcomes[0] as InstanceOutcome;
  if (host.targets === undefined || outcomes.length === 1) {
    const o = first.outcome;
    if (o.status === "failed" && host.targets !== undefined) {
      return { ...o, message: `1 of 1 instances failed: ${prefixed(first)}` };
    }
    return o;
  }
  const failures = outcomes.filter((o) => o.outcome.status === "failed");
  if (failures.length === 0) {
    const same = <T>(f: (o: InstanceOutcome) => T) => {
      const values = new Set(outcomes.map(f));
      return values.size === 1 ? (values.values().next().value as T) : undefined;
    };
    return {
      status: "activated",
      generation: same((o) =>
        o.outcome.status === "activated" ? o.outcome.generation : undefined,
      ),
      previous: same((o) => (o.outcome.status === "activated" ? o.outcome.previous : undefined)),
    };
  }
  const firstFailed = (failures[0] as InstanceOutcome).outcome as Extract<
    DeployOutcome,
    { status: "failed" }
  >;
  return {
    status: "failed",
    phase: firstFailed.phase,
    message: `${failures.length} of ${outcomes.length} instances failed: ${failures.map(prefixed).join("; ")}`,
    rolledBack: failures.every((o) => o.outcome.status === "failed" && o.outcome.rolledBack),
  };
}

function prefixed(o: InstanceOutcome): string {
  const message = o.outcome.status === "failed" ? o.outcome.message : "activated";
  return message.startsWith(`${o.instanceId}:`) ? message : `${o.instanceId}: ${message}`;
}

// Faults that concern the account, the region or the document, never one host.
const WAVE_FAULTS = new Set([
  "ssm-invalid-document",
  "ssm-invalid-parameters",
  "ssm-access-denied",
  "ssm-no-credentials",
  "ssm-bad-credentials",
  "ssm-no-region",
  "ssm-unreachable",
  "ssm-throttled",
]);

function errorName(err: unknown): string {
  const e = err as { name?: string; code?: string } | undefined;
  return (e?.name === "Error" || e?.name === undefined ? e?.code : e.name) ?? "Error";
}

function isThrottling(err: unknown): boolean {
  const name = errorName(err);
  return (
    [
      "ThrottlingException",
      "Throttling",
      "TooManyRequestsException",
      "RequestLimitExceeded",
    ].includes(name) ||
    (err as { $retryable?: { throttling?: boolean } })?.$retryable?.throttling === true
  );
}

const FAULTS: readonly (readonly [readonly string[], string, (s: SsmSettings) => string])[] = [
  [
    ["InvalidDocument", "InvalidDocumentVersion"],
    "ssm-invalid-document",
    (s) =>
      `create the document "${s.documentName}": nixship ssm document > doc.json && aws ssm create-document --document-type Command --document-format JSON --content file://doc.json --name ${s.documentName}${s.region ? ` --region ${s.region}` : ""} (or set ssm.documentName in the fleet file)`,
  ],
  [
    ["InvalidParameters"],
    "ssm-invalid-parameters",
    (s) =>
      `the document "${s.documentName}" may predate this nixship: update it from 'nixship ssm document' (aws ssm update-document, then make the new version the default)`,
  ],
  [
    ["InvalidInstanceId"],
    "ssm-invalid-instance",
    () =>
      "check the instance ID and the region, and that its SSM agent is online ('aws ssm describe-instance-information')",
  ],
  [
    ["InvalidTarget", "InvalidTargetMaps"],
    "ssm-invalid-target",
    () => "check the host's targets in the fleet file (tag:NAME keys and their values)",
  ],
  [
    ["UnsupportedPlatformType"],
    "ssm-unsupported-platform",
    () => "the document runs on Linux instances only",
  ],
  [
    ["AccessDeniedException", "AccessDenied"],
    "ssm-access-denied",
    (s) =>
      `the deployer's AWS identity needs ssm:SendCommand on the document "${s.documentName}" and the instances, and ssm:ListCommands, ssm:ListCommandInvocations and ssm:GetCommandInvocation`,
  ],
  [
    ["CredentialsProviderError"],
    "ssm-no-credentials",
    () =>
      "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
  ],
  [
    [
      "UnrecognizedClientException",
      "InvalidClientTokenId",
      "ExpiredTokenException",
      "ExpiredToken",
      "InvalidSignatureException",
    ],
    "ssm-bad-credentials",
    () => "the AWS credentials are invalid or expired: refresh them (e.g. 'aws sso login')",
  ],
  [
    ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ECONNRESET", "ETIMEDOUT", "TimeoutError"],
    "ssm-unreachable",
    () => "the SSM endpoint cannot be reached: check the network and the region",
  ],
  [
    ["ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"],
    "ssm-throttled",
    () => "SSM kept throttling the requests: retry later, or lower --parallel",
  ],
];

/** An AWS SDK error as an OperationError with an `ssm-…` code and a hint. */
export function ssmFault(err: unknown, settings: SsmSettings): NixshipError {
  if (err instanceof NixshipError) return err;
  const name = errorName(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (/region is missing/i.test(detail)) {
    return new OperationError("ssm-no-region", `SSM: ${detail}`, {
      cause: err,
      hint: 'set "ssm": {"region": …} in the fleet file, or AWS_REGION',
    });
  }
  const known = FAULTS.find(([names]) => names.includes(name));
  const code = known?.[1] ?? "ssm-failed";
  return new OperationError(code, `SSM: ${name}: ${detail}`, {
    cause: err,
    ...(known ? { hint: known[2](settings) } : {}),
  });
}

function faultMessage(err: unknown): string {
  if (err instanceof NixshipError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  return err instanceof Error ? err.message : String(err);
}
