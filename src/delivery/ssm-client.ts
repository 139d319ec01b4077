// The SSM calls the ssm delivery makes, and nothing of deploying: SendCommand with the fleet's
// document (at most once: a send whose answer was lost is looked for, never repeated), polling
// a command's invocations until each is final (bounded), reading each one's output; throttling
// retried with backoff, other faults made OperationErrors (ssm-faults.ts).
import { randomBytes } from "node:crypto";
import {
  CancelCommandCommand,
  type CommandInvocation,
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type SendCommandCommandInput,
  type SendCommandCommandOutput,
  SSMClient,
} from "@aws-sdk/client-ssm";
import { OperationError } from "../errors.js";
import type { SsmSettings } from "../fleet/fleet.js";
import { limitAnswers } from "../util/aws-response-limit.js";
import { awsRequestHandler } from "../util/aws-timeouts.js";
import { mapLimit } from "../util/pool.js";
import { testWait } from "../util/test-waits.js";
import {
  faultMessage,
  isThrottling,
  mayHaveBeenTaken,
  ssmFault,
  WAVE_FAULTS,
} from "./ssm-faults.js";
import {
  type FinishedInvocation,
  isTerminal,
  missing,
  TERMINAL_COMMAND,
  unread,
} from "./ssm-outcomes.js";

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

/** Invocations whose output is read at once (GetCommandInvocation, as each one ends). */
const READS_AT_ONCE = 8;

/**
 * Lookups for a command whose SendCommand answer was lost, a poll interval apart: SSM lists a
 * command it took within seconds (ListCommands is eventually consistent).
 */
const SEND_LOOKUPS = 6;
/** Commands a page of that lookup holds, and the most pages read in one lookup. */
const LOOKUP_PAGE = 50;
const LOOKUP_PAGES = 20;
/**
 * How far SSM's clock may be behind ours: SigV4 requests signed further from its clock are
 * refused, so a command it took was requested after (our send's start − this) by its clock.
 */
const CLOCK_SKEW_MS = 15 * 60_000;
/** CancelCommand takes at most this many instance IDs (SSM's limit). */
const CANCEL_IDS = 50;
/** How long cancelling a command's waiting invocations may take in all (listing, then cancels). */
const CANCEL_MS = 30_000;
/** A command's Comment holds at most this much (SSM's limit); its last part is the send's nonce. */
const COMMENT_LIMIT = 100;

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
    // The instances the command was sent to; by targets, those SSM lists (it resolves them).
    const expected = instanceIds === undefined ? undefined : new Set(instanceIds);
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
    // Invocations SSM listed as ended whose output could not be read yet (the read failed, or
    // its answer was not final): read again at each poll, until the deadline.
    const unreadYet = new Map<string, { inv: CommandInvocation; why: string }>();
    // What the last poll listed: an interrupt that ends a poll mid-call settles by it.
    let invocations: CommandInvocation[] = [];
    /** Every instance without a finished invocation: unread as such, the rest as `status`. */
    const settleRest = (status: string) => {
      const rest = [...unreadYet.values()]
        .filter(({ inv }) => !finished.has(inv.InstanceId as string))
        .map(({ inv, why }) => unread(inv, why));
      const ids = [...new Set([...invocations.map((i) => i.InstanceId), ...(instanceIds ?? [])])];
      for (const id of ids) {
        if (id !== undefined && !finished.has(id) && !unreadYet.has(id))
          rest.push(missing(id, status));
      }
      settle(rest);
    };
    for (;;) {
      const listed = await this.listInvocations(commandId, signal).catch((err: unknown) => {
        if (signal?.aborted) return undefined;
        throw err;
      });
      if (listed === undefined) {
        settleRest("Unfinished");
        return finished;
      }
      // An instance the command was not sent to (a listing that is wrong) is not waited for.
      invocations =
        expected === undefined
          ? listed
          : listed.filter((inv) => inv.InstanceId !== undefined && expected.has(inv.InstanceId));
      for (const inv of invocations)
        if (inv.InstanceId !== undefined) instances.add(inv.InstanceId);
      hooks.onProgress?.(invocations);
      const ended = invocations.filter(
        (inv) => inv.InstanceId !== undefined && !finished.has(inv.InstanceId) && isTerminal(inv),
      );
      const reads = await mapLimit(ended, READS_AT_ONCE, (inv) =>
        this.finished(commandId, inv, signal),
      );
      const read: FinishedInvocation[] = [];
      for (const [i, r] of reads.entries()) {
        const inv = ended[i] as CommandInvocation;
        if ("why" in r) unreadYet.set(inv.InstanceId as string, { inv, why: r.why });
        else {
          unreadYet.delete(r.instanceId);
          read.push(r);
        }
      }
      settle(read);
      let complete = false;
      if (unreadYet.size === 0 && invocations.every(isTerminal)) {
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
        settleRest("Terminated");
        return finished;
      }
      if (this.now() > deadline() || signal?.aborted) {
        settleRest("Unfinished");
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

  /**
   * Cancels the command on each instance SSM lists as not started yet (Pending, Delayed), so it
   * never starts there; the instances cancelled, or why it could not (bounded by CANCEL_MS). One
   * that runs is left to end: SSM's agent would kill its shell (SIGKILL) wherever it is, a
   * switch included. An instance SSM has not listed yet (a tag target's) is not cancelled.
   */
  async cancelNotStarted(
    commandId: string,
    /** Told each instance before its cancel is asked (an invocation may end Cancelled at once). */
    cancelling: (instanceIds: readonly string[]) => void = () => {},
  ): Promise<{ readonly cancelled: readonly string[]; readonly why?: string }> {
    const signal = AbortSignal.timeout(CANCEL_MS);
    const cancelled: string[] = [];
    try {
      const listed = await this.listInvocations(commandId, signal);
      const waiting = [
        ...new Set(
          listed
            .filter((inv) => inv.Status === "Pending" || inv.Status === "Delayed")
            .map((inv) => inv.InstanceId)
            .filter((id): id is string => id !== undefined),
        ),
      ];
      for (let i = 0; i < waiting.length; i += CANCEL_IDS) {
        const input = { CommandId: commandId, InstanceIds: waiting.slice(i, i + CANCEL_IDS) };
        cancelling(input.InstanceIds);
        await this.call(() =>
          this.client.send(new CancelCommandCommand(input), { abortSignal: signal }),
        );
        cancelled.push(...input.InstanceIds);
      }
      return { cancelled };
    } catch (err) {
      return { cancelled, why: faultMessage(err) };
    }
  }

  /** The command as ListCommands lists it; undefined while it lists no command of this ID. */
  private async getCommand(commandId: string, signal: AbortSignal | undefined) {
    const page = await this.call(() =>
      this.client.send(new ListCommandsCommand({ CommandId: commandId }), { abortSignal: signal }),
    );
    return page.Commands?.find((c) => c.CommandId === commandId);
  }

  /**
   * The invocation's output (stdout holds activate.sh's JSON on its last line), or why it could
   * not be read: the read failed, or answered for another command or instance, or said the
   * invocation is still running (GetCommandInvocation lags the listing).
   */
  private async finished(
    commandId: string,
    inv: CommandInvocation,
    signal: AbortSignal | undefined,
  ): Promise<FinishedInvocation | { readonly why: string }> {
    const instanceId = inv.InstanceId as string;
    let out: GetCommandInvocationCommandOutput;
    try {
      out = await this.readInvocation(commandId, instanceId, signal);
    } catch (err) {
      return { why: faultMessage(err) };
    }
    const clip = (v: string) => v.slice(0, FIELD_KEPT);
    if (out.CommandId !== undefined && out.CommandId !== commandId) {
      return {
        why: `SSM answered with the invocation of another command (${clip(out.CommandId)})`,
      };
    }
    if (out.InstanceId !== undefined && out.InstanceId !== instanceId) {
      return { why: `SSM answered with another instance's invocation (${clip(out.InstanceId)})` };
    }
    if (!isTerminal(out)) {
      return { why: `SSM's answer says it is ${clip(out.Status ?? "without a status")} still` };
    }
    return {
      instanceId,
      status: inv.Status ?? "",
      details: inv.StatusDetails ?? inv.Status ?? "",
      stdout: out.StandardOutputContent ?? "",
      stderr: out.StandardErrorContent ?? "",
      responseCode: out.ResponseCode,
    };
  }

  private readInvocation(commandId: string, instanceId: string, signal: AbortSignal | undefined) {
    return this.call(() =>
      this.client.send(
        new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
        { abortSignal: signal },
      ),
    );
  }

  /**
   * SendCommand, sent once (see sentOnce); the command's ID. Its Comment ends with a nonce, by
   * which a command whose answer was lost is found in SSM's list. One SSM may have taken and
   * does not list fails with `ssm-send-unknown`: it may be running.
   */
  async send(input: Omit<SendCommandCommandInput, "DocumentName">): Promise<string> {
    const nonce = `#${randomBytes(8).toString("hex")}`;
    const said = (input.Comment ?? "").slice(0, COMMENT_LIMIT - nonce.length - 1);
    const sent = {
      DocumentName: this.settings.documentName,
      ...input,
      Comment: said ? `${said} ${nonce}` : nonce,
    };
    // By the wall clock (SSM's, within CLOCK_SKEW_MS), whatever `now` the waits are told.
    const began = Date.now();
    let out: SendCommandCommandOutput;
    try {
      out = await this.attempt(() => this.client.send(sentOnce(new SendCommandCommand(sent)), {}));
    } catch (err) {
      if (!mayHaveBeenTaken(err)) throw ssmFault(err, this.settings);
      const found = await this.findSent(sent.DocumentName, sent.Comment, began);
      if ("commandId" in found) return found.commandId;
      throw new OperationError(
        "ssm-send-unknown",
        `SSM may have taken the command "${sent.Comment}", whose answer was lost (${ssmFault(err, this.settings).message}), and ${found.why}: it may be running`,
        {
          cause: err,
          hint: "it was not sent again, which could run it twice: 'aws ssm list-commands' shows whether SSM has it, and 'nixship plan' what the hosts run",
        },
      );
    }
    const id = out.Command?.CommandId;
    if (!id) throw new OperationError("ssm-failed", "SendCommand returned no command ID");
    return id;
  }

  /**
   * The ID of the command of `documentName` whose Comment is `comment` (its nonce is this
   * send's alone), requested after `began` by SSM's clock; asked SEND_LOOKUPS times, a poll
   * interval apart, while SSM lists none. Else why not: none listed, or SSM not asked.
   */
  private async findSent(
    documentName: string,
    comment: string,
    began: number,
  ): Promise<{ readonly commandId: string } | { readonly why: string }> {
    const since = new Date(began - CLOCK_SKEW_MS).toISOString().replace(/\.\d+Z$/, "Z");
    for (let lookup = 1; ; lookup++) {
      const found = await this.listedSend(documentName, comment, since).then(
        (commandId) => (commandId === undefined ? undefined : { commandId }),
        (err: unknown) => ({ why: `looking for it failed: ${faultMessage(err)}` }),
      );
      if (found !== undefined && ("commandId" in found || lookup === SEND_LOOKUPS)) return found;
      if (lookup === SEND_LOOKUPS) {
        return { why: `SSM lists no such command ${SEND_LOOKUPS} times asked` };
      }
      await this.sleep(this.pollInterval);
    }
  }

  private async listedSend(
    documentName: string,
    comment: string,
    since: string,
  ): Promise<string | undefined> {
    const tokens = new Set<string>();
    let token: string | undefined;
    for (let pages = 0; pages < LOOKUP_PAGES; pages++) {
      const input = {
        Filters: [
          { key: "InvokedAfter" as const, value: since },
          { key: "DocumentName" as const, value: documentName },
        ],
        MaxResults: LOOKUP_PAGE,
        ...(token ? { NextToken: token } : {}),
      };
      const page = await this.call(() => this.client.send(new ListCommandsCommand(input)));
      const mine = (page.Commands ?? []).find(
        (c) =>
          c.Comment === comment &&
          (c.DocumentName === undefined || c.DocumentName === documentName) &&
          c.CommandId,
      );
      if (mine?.CommandId) return mine.CommandId;
      const next = page.NextToken || undefined;
      if (next === undefined || tokens.has(next)) return undefined;
      tokens.add(next);
      token = next;
    }
    return undefined;
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
    try {
      return await this.attempt(request);
    } catch (err) {
      throw ssmFault(err, this.settings);
    }
  }

  /** One SDK call, throttling retried with backoff (SSM ran nothing it throttled); faults as thrown. */
  private async attempt<T>(request: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (err) {
        if (isThrottling(err) && attempt < THROTTLE_ATTEMPTS) {
          await this.sleep(Math.min(this.throttleDelay * 2 ** (attempt - 1), 20_000));
          continue;
        }
        throw err;
      }
    }
  }
}

/**
 * The command with the SDK's retry taken out, for it alone (the client's other calls keep
 * theirs): SendCommand is not idempotent, and the SDK repeats a request after a timeout, a
 * reset or a 5xx, when the first may have reached SSM and run. A throttled send, which SSM
 * refused before running anything, is repeated by `attempt`.
 */
function sentOnce(command: SendCommandCommand): SendCommandCommand {
  command.middlewareStack.add((next) => next, {
    name: "retryMiddleware",
    tags: ["RETRY"],
    step: "finalizeRequest",
    priority: "high",
    override: true,
  });
  return command;
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
