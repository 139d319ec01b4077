// One SSM command's invocations as the SSM stand-in runs them on the lab (moto runs nothing):
// the document's shell on the lab host each instance stands for, at most MaxConcurrency at a
// time in the order the instances came; a silent instance's invocation never starts and ends
// TimedOut ("Delivery Timed Out") once the command's delivery timeout has passed. CancelCommand:
// a Pending invocation ends Cancelled and never runs; a running one (AWS's agent kills its shell
// with SIGKILL) is not killed here: it runs to its end and then says Cancelled.

export type InvocationStatus =
  | "Pending"
  | "InProgress"
  | "Success"
  | "Failed"
  | "TimedOut"
  | "Cancelled";

export interface Invocation {
  readonly instanceId: string;
  status: InvocationStatus;
  /** A silent instance's invocation: when its delivery times out (ms since the epoch). */
  deliveryDeadline?: number;
  /** activate.sh's exit code, -1 until it ends. */
  code: number;
  /** CancelCommand named it while it ran: it ends Cancelled. */
  cancelAsked?: boolean;
  stdout: string;
  stderr: string;
}

/** What one run of the shell on a lab host gave. */
export interface ShellRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandRunsOptions {
  readonly shell: string;
  /** SendCommand's MaxConcurrency (checked already: a count, or a percentage of the targets). */
  readonly maxConcurrency: string;
  readonly timeoutSeconds: number;
  readonly silent: (instanceId: string) => boolean;
  /** Runs the shell on the lab host of this instance, as root, as SSM's agent would. */
  readonly run: (instanceId: string, shell: string) => Promise<ShellRun>;
}

/** SSM keeps the first 24,000 characters of an invocation's stdout, and 8,000 of its stderr. */
const STDOUT_LIMIT = 24_000;
const STDERR_LIMIT = 8_000;

export class CommandRuns {
  readonly invocations: Invocation[];
  readonly #queue: Invocation[] = [];
  readonly #limit: number;
  readonly #options: CommandRunsOptions;
  #running = 0;
  readonly #done = new Set<Promise<void>>();

  constructor(instanceIds: readonly string[], options: CommandRunsOptions) {
    this.#options = options;
    this.#limit = concurrencyOf(options.maxConcurrency, instanceIds.length);
    const deadline = Date.now() + options.timeoutSeconds * 1000;
    this.invocations = instanceIds.map((instanceId) => ({
      instanceId,
      status: "Pending",
      ...(options.silent(instanceId) ? { deliveryDeadline: deadline } : {}),
      code: -1,
      stdout: "",
      stderr: "",
    }));
    this.#queue.push(...this.invocations.filter((i) => i.deliveryDeadline === undefined));
    this.#pump();
  }

  /** Every invocation as it stands now: a silent one's delivery times out at its deadline. */
  now(): Invocation[] {
    for (const inv of this.invocations) {
      if (inv.deliveryDeadline !== undefined && Date.now() >= inv.deliveryDeadline) {
        inv.status = "TimedOut";
        inv.deliveryDeadline = undefined;
      }
    }
    return this.invocations;
  }

  /** The command's status: in progress while any invocation is open, else how they ended. */
  status(): "InProgress" | "Success" | "Failed" | "Cancelled" {
    const all = this.now();
    if (all.some((i) => i.status === "Pending" || i.status === "InProgress")) return "InProgress";
    if (all.some((i) => i.status === "Cancelled")) return "Cancelled";
    return all.some((i) => i.status !== "Success") ? "Failed" : "Success";
  }

  /**
   * CancelCommand on these instances (all when undefined): a Pending invocation ends Cancelled
   * without running; a running one ends Cancelled when it ends; an ended one stays as it is.
   */
  cancel(instanceIds: readonly string[] | undefined): void {
    for (const inv of this.now()) {
      if (instanceIds !== undefined && !instanceIds.includes(inv.instanceId)) continue;
      if (inv.status === "Pending") {
        inv.status = "Cancelled";
        inv.deliveryDeadline = undefined;
        const queued = this.#queue.indexOf(inv);
        if (queued >= 0) this.#queue.splice(queued, 1);
      } else if (inv.status === "InProgress") {
        inv.cancelAsked = true;
      }
    }
  }

  /** Waits for the runs started so far (the stand-in's close). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#done]);
  }

  #pump(): void {
    while (this.#running < this.#limit) {
      const inv = this.#queue.shift();
      if (inv === undefined) return;
      inv.status = "InProgress";
      this.#running++;
      const done = this.#options
        .run(inv.instanceId, this.#options.shell)
        .then(
          (r) => {
            inv.code = r.code;
            inv.stdout = r.stdout.slice(0, STDOUT_LIMIT);
            inv.stderr = r.stderr.slice(0, STDERR_LIMIT);
            inv.status = inv.cancelAsked ? "Cancelled" : r.code === 0 ? "Success" : "Failed";
          },
          (err: unknown) => {
            inv.stderr = `the stand-in could not run the command: ${String(err)}`;
            inv.status = "Failed";
          },
        )
        .finally(() => {
          this.#running--;
          this.#done.delete(done);
          this.#pump();
        });
      this.#done.add(done);
    }
  }
}

/** MaxConcurrency as a count of instances: a number, or a percentage of the targets (at least 1). */
export function concurrencyOf(value: string, targets: number): number {
  const percent = /^(\d+)%$/.exec(value)?.[1];
  if (percent === undefined) return Number(value);
  return Math.max(1, Math.floor((targets * Number(percent)) / 100));
}
