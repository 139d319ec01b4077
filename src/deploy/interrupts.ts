// An interrupt before the rollout ends the deploy with an InterruptedError: no host changed.
import { InterruptedError } from "../errors.js";
import { interruptReason } from "../util/interrupt-reason.js";

// --- interrupts before the rollout ----------------------------------------------------------

export function throwIfInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interrupted(signal, undefined);
}

/** A stage that failed because of the interrupt (a killed nix) ends as the interrupt. */
export function interruptedBefore(signal: AbortSignal | undefined): (err: unknown) => never {
  return (err) => {
    throw signal?.aborted && !(err instanceof InterruptedError) ? interrupted(signal, err) : err;
  };
}

function interrupted(signal: AbortSignal, cause: unknown): InterruptedError {
  return new InterruptedError(
    `${interruptReason(signal)} before the rollout started: no host was changed`,
    cause === undefined ? {} : { cause },
  );
}
