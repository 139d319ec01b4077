// What an interrupt does to a wave's SSM commands: each command sent is cancelled, once, on the
// instances SSM has not started it on (they start nothing), whether the interrupt came before or
// after it was sent. An instance that runs it is left to end: SSM's cancel would kill its shell
// wherever it is, a switch included; the deployer follows it and sends it back.
import type { DeliveryEvent } from "./delivery.js";
import type { SsmCommands } from "./ssm-client.js";

interface SentCommand {
  readonly commandId: string;
  readonly hosts: readonly string[];
  /** The instances its cancel was asked for, filled before each ask. */
  readonly cancelled: Set<string>;
  asked: boolean;
}

export class InterruptedCommands {
  readonly #commands: Pick<SsmCommands, "cancelNotStarted">;
  readonly #signal: AbortSignal | undefined;
  readonly #emit: (event: DeliveryEvent) => void;
  readonly #sent: SentCommand[] = [];
  readonly #onAbort = () => {
    for (const c of this.#sent) this.#cancel(c);
  };

  constructor(
    commands: Pick<SsmCommands, "cancelNotStarted">,
    signal: AbortSignal | undefined,
    emit: (event: DeliveryEvent) => void,
  ) {
    this.#commands = commands;
    this.#signal = signal;
    this.#emit = emit;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /**
   * A command sent for `hosts`; the instances an interrupt cancels it on before they started
   * (filled as the cancel is asked, so an invocation listed Cancelled is known as one).
   */
  sent(commandId: string, hosts: readonly string[]): ReadonlySet<string> {
    const command: SentCommand = { commandId, hosts, cancelled: new Set(), asked: false };
    this.#sent.push(command);
    if (this.#signal?.aborted) this.#cancel(command);
    return command.cancelled;
  }

  close(): void {
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }

  #cancel(command: SentCommand): void {
    if (command.asked) return;
    command.asked = true;
    const say = (line: string) => {
      for (const host of command.hosts) this.#emit({ type: "log", host, line });
    };
    void this.#commands
      .cancelNotStarted(command.commandId, (ids) => {
        for (const id of ids) command.cancelled.add(id);
      })
      .then(({ cancelled, why }) => {
        if (cancelled.length > 0) {
          say(
            `cancelled SSM command ${command.commandId} on ${cancelled.length} instance(s) it had not started on (${cancelled.join(", ")})`,
          );
        }
        if (why !== undefined) {
          say(
            `could not cancel SSM command ${command.commandId} where it has not started (${why}): SSM may still start it there ('aws ssm list-command-invocations --command-id ${command.commandId}' shows where it waits; 'aws ssm cancel-command' with those instance IDs stops it there)`,
          );
        }
      });
  }
}
