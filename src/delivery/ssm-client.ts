// The SSM calls the ssm delivery makes, and nothing of deploying: SendCommand with the fleet's
// document, polling a command's invocations until each is final (bounded), reading each one's
// output; throttling retried with backoff, other faults made OperationErrors (ssm-faults.ts).
import {
  type CommandInvocation,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type SendCommandCommandInput,
  SSMClient,
} from "@aws-sdk/client-ssm";
import { OperationError } from "../errors.js";
import type { SsmSettings } from "../fleet/fleet.js";
import { limitAnswers } from "../util/aws-response-limit.js";
import { awsRequestHandler } from "../util/aws-timeouts.js";
import { testWait } from "../util/test-waits.js";
import { faultMessage, isThrottling, ssmFault, WAVE_FAULTS } from "./ssm-faults.js";
import { type FinishedInvocation, isTerminal, missing, TERMINAL_COMMAND } from "./ssm-outcomes.js";

export interface SsmCommandsOptions {
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

const THROTTLE_ATTEMPTS = 8;
/** Milliseconds between polls unless told ($NIXSHIP_SSM_POLL_MS shortens it for tests). */
const POLL_INTERVAL = 2000;

const INVOCATIONS_PER_PAGE = 50;

/**
 * The most pages of one command's invocations read in one poll: 50,000 instances, past what one
 * command reaches (SSM sends a command to at most 50 instance IDs, and to targets by tag in
 * the rate MaxConcurrency allows).
 */
const MAX_INVOCATION_PAGES = 1000;

/** SSM's listing of a command's invocations did not move on: a fault of the service or a proxy. */
function pagingError(commandId: string, what: string): OperationError {
  return new OperationError(
    "ssm-paging",
    `SSM's list of the invocations of command ${commandId} does not move on: ${what}`,
    { hint: "check the SSM endpoint (AWS_ENDPOINT_URL_SSM, or a proxy in front of it)" },
  );
}

export class SsmCommands {
  private readonly settings: SsmSettings;
  private readonly client: SSMClient;
  private readonly pollInterval: number;
  private readonly throttleDelay: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(options: SsmCommandsOptions) {
    this.settings = options.settings;
    this.client = options.client ?? ssmClient(options.settings.region);
    this.pollInterval =
      options.pollInterval ?? testWait("NIXSHIP_SSM_POLL_MS", POLL_INTERVAL, POLL_INTERVAL);
    this.throttleDelay = options.throttleDelay ?? 1000;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.now = options.now ?? Date.now;
  }

  /**
   * Polls a command until each expected instance (or, for targets, every instance SSM
   * resolved) has a terminal invocation, or the command itself ended; returns the finished
   * invocations by instance. An expected instance with none when the command ended never
   * started ("Terminated": SSM stopped sending after MaxErrors).
   */
  async waitFor(
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
    bound: {
      /**
       * Seconds the command's own bounds give it: to be delivered and to run (default: the
       * fleet's commandTimeout for each, and 300 for SSM to report the end). A status command
       * sent with 60 s for each waits no longer than those allow.
       */
      readonly seconds?: number;
      /** Seconds the runs may take beyond them (a reboot in the middle). */
      readonly extraSeconds?: number;
      /**
       * The command's MaxConcurrency: its instances (those named, or as many as its targets
       * turn out to match) run in rounds of this many, each round within commandTimeout.
       */
      readonly concurrency?: number;
    } = {},
  ): Promise<Map<string, FinishedInvocation>> {
    const finished = new Map<string, FinishedInvocation>();
    const started = this.now();
    const instances = new Set<string>(instanceIds ?? []);
    const deadline = () => {
      const rounds =
        bound.concurrency === undefined
          ? 1
          : Math.ceil(Math.max(1, instances.size) / Math.max(1, bound.concurrency));
      const seconds = bound.seconds ?? (rounds + 1) * this.settings.commandTimeout + 300;
      return started + (seconds + (bound.extraSeconds ?? 0)) * 1000 + 50 * this.pollInterval;
    };
    const settle = (invs: readonly FinishedInvocation[]) => {
      for (const inv of invs) finished.set(inv.instanceId, inv);
      for (const inv of invs) hooks.onFinished?.(inv, finished);
    };
    // What the last poll listed: an interrupt that ends a poll mid-call settles by it.
    let invocations: CommandInvocation[] = [];
    const unfinished = (status: string) =>
      [...new Set([...invocations.map((i) => i.InstanceId), ...(instanceIds ?? [])])]
        .filter((id): id is string => id !== undefined && !finished.has(id))
        .map((id) => missing(id, status));
    for (;;) {
      const listed = await this.listInvocations(commandId, signal).catch((err: unknown) => {
        if (signal?.aborted) return undefined;
        throw err;
      });
      if (listed === undefined) {
        settle(unfinished("Unfinished"));
        return finished;
      }
      invocations = listed;
      for (const inv of invocations)
        if (inv.InstanceId !== undefined) instances.add(inv.InstanceId);
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
          const command = await this.getCommand(commandId, signal).catch((err: unknown) => {
            if (signal?.aborted) return undefined;
            throw err;
          });
          const target = command?.TargetCount ?? 0;
          // A command not listed yet (SSM is eventually consistent) is still to come.
          complete =
            command !== undefined &&
            (TERMINAL_COMMAND.has(command.Status ?? "") ||
              (instanceIds === undefined && target > 0 && finished.size >= target));
        }
      }
      if (complete) {
        settle(unfinished("Terminated"));
        return finished;
      }
      if (this.now() > deadline() || signal?.aborted) {
        settle(unfinished("Unfinished"));
        return finished;
      }
      await abortableSleep(this.sleep, this.pollInterval, signal);
    }
  }

  /**
   * Every invocation of the command, page by page: at most MAX_INVOCATION_PAGES, and a page
   * that does not move on (its token repeated, or empty while it says more follow) is refused.
   */
  private async listInvocations(
    commandId: string,
    signal: AbortSignal | undefined,
  ): Promise<CommandInvocation[]> {
    const all: CommandInvocation[] = [];
    const tokens = new Set<string>();
    let token: string | undefined;
    for (let pages = 0; ; pages++) {
      if (pages === MAX_INVOCATION_PAGES)
        throw pagingError(commandId, `${pages} pages and more follow`);
      const input = {
        CommandId: commandId,
        MaxResults: INVOCATIONS_PER_PAGE,
        ...(token ? { NextToken: token } : {}),
      };
      const page = await this.call(() =>
        this.client.send(new ListCommandInvocationsCommand(input), { abortSignal: signal }),
      );
      const listed = page.CommandInvocations ?? [];
      if (listed.length > INVOCATIONS_PER_PAGE) {
        throw pagingError(
          commandId,
          `a page holds ${listed.length} invocations, past the ${INVOCATIONS_PER_PAGE} asked for`,
        );
      }
      // Only what the wait reads of each (a page of 16 MiB, kept for 1,000 pages, would not fit).
      all.push(...listed.map(slimInvocation));
      const next = page.NextToken || undefined;
      if (next === undefined) return all;
      if (next === token || tokens.has(next)) {
        throw pagingError(commandId, "a page gave back a token the listing was at before");
      }
      if (listed.length === 0) throw pagingError(commandId, "an empty page says more follow");
      tokens.add(next);
      token = next;
    }
  }

  private async getCommand(commandId: string, signal: AbortSignal | undefined) {
    const page = await this.call(() =>
      this.client.send(new ListCommandsCommand({ CommandId: commandId }), { abortSignal: signal }),
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
  async send(input: Omit<SendCommandCommandInput, "DocumentName">): Promise<string> {
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
  async trySend(
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

/** SSM's client: its connections bounded (aws-timeouts.ts), and every answer (aws-response-limit.ts). */
function ssmClient(region: string | undefined): SSMClient {
  const client = new SSMClient({
    requestHandler: awsRequestHandler(),
    ...(region ? { region } : {}),
  });
  limitAnswers(client);
  return client;
}

/** `sleep(ms)`, ended early by `signal` (an interrupt is not kept waiting for the next poll). */
function abortableSleep(
  sleep: (ms: number) => Promise<void>,
  ms: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (signal === undefined) return sleep(ms);
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    void sleep(ms).then(done);
  });
}

/** The longest value of an invocation's field kept: an instance ID is 19 characters, a status 20. */
const FIELD_KEPT = 64;

/** The fields of an invocation the wait reads (instance, status, its details), each clipped. */
function slimInvocation(inv: CommandInvocation): CommandInvocation {
  const clip = (v: string | undefined) => (v === undefined ? undefined : v.slice(0, FIELD_KEPT));
  const instanceId = clip(inv.InstanceId);
  const status = clip(inv.Status);
  const details = clip(inv.StatusDetails);
  return {
    ...(instanceId === undefined ? {} : { InstanceId: instanceId }),
    ...(status === undefined ? {} : { Status: status as CommandInvocation["Status"] }),
    ...(details === undefined ? {} : { StatusDetails: details }),
  };
}
