// Whether the deployer rolls a host back, and why: one decision, taken from a typed verdict on
// the host, for every place that judges one (the HTTP checks after its switch, an interrupt
// before its confirmation, an agent host's failed report, a failed bake, and the hosts of a wave
// one of whose hosts failed its bake). Pure. The host's own script still rolls itself back when
// a step of its activation fails: it cannot wait for a deployer that may be gone.
import { formatValue, type Measurement } from "./analysis.js";

/** A failed bake, as the host's outcome carries it to the summary, the events and the record. */
export interface BakeFailure {
  readonly kind: "bake";
  /** Seconds into the bake when it failed. */
  readonly at: number;
  /** The check that failed (a check of the role, repeated during the bake). */
  readonly check?: BakeCheck;
  /** The queries whose condition failed, each with what it measured. */
  readonly analysis: readonly FailedAnalysis[];
}

/** A check of the role that failed during the bake: an HTTP check (its URL) or a command. */
export type BakeCheck =
  | { readonly url: string; readonly message: string }
  | { readonly run: string; readonly message: string };

/**
 * A host rolled back with its wave, as its outcome carries it: it was changed in the same wave
 * as `host`, which failed its bake, and a failed bake takes the whole wave back.
 */
export interface WaveRollback {
  readonly kind: "wave";
  /** The host of its wave whose failed bake rolled it back (the first to fail). */
  readonly host: string;
}

/** What failed a host the deployer judged after its confirmation. */
export type FailureCause = BakeFailure | WaveRollback;

export interface FailedAnalysis {
  readonly name: string;
  /** The query as sent for this host. */
  readonly query: string;
  /** The condition, in words ("at most 0.05"). */
  readonly condition: string;
  /** Why it failed. */
  readonly why: string;
  readonly measurements: readonly Measurement[];
}

/** What the deployer found of a host it changed. */
export type HostVerdict =
  /** Its HTTP checks failed after its switch, before its confirmation. */
  | { readonly kind: "health-failed"; readonly message: string }
  /** The deploy was interrupted before its confirmation. */
  | { readonly kind: "interrupted"; readonly message: string }
  /** It reported a failure of its own (an agent host): where it stands is its report's. */
  | { readonly kind: "host-failed"; readonly message: string }
  /** An agent host an interrupt left before it applied its release. */
  | { readonly kind: "withdrawn"; readonly message: string }
  /** Confirmed, then it failed its bake: a check, or its analysis. */
  | { readonly kind: "bake-failed"; readonly failure: BakeFailure }
  /** Confirmed, and another host of its wave (`host`) failed its bake. */
  | { readonly kind: "wave-failed"; readonly host: string }
  /** Confirmed, and its bake (if any) passed. */
  | { readonly kind: "kept" };

export type RollbackDecision =
  | { readonly rollBack: false; readonly why: string }
  | { readonly rollBack: true; readonly why: string };

/** Whether the host goes back to what it ran before, and why, in words for its message. */
export function decideRollback(verdict: HostVerdict): RollbackDecision {
  switch (verdict.kind) {
    case "health-failed":
      return { rollBack: true, why: verdict.message };
    case "interrupted":
      return { rollBack: true, why: verdict.message };
    case "host-failed":
      // Its agent may have gone back by itself; the channel is named back all the same, so that
      // the host never takes the failed system up again.
      return { rollBack: true, why: verdict.message };
    case "withdrawn":
      return { rollBack: true, why: verdict.message };
    case "bake-failed":
      return { rollBack: true, why: bakeFailureText(verdict.failure) };
    case "wave-failed":
      // Its wave is judged as one: the system that failed on one host is not kept on the others.
      return {
        rollBack: true,
        why: `rolled back with its wave: ${verdict.host} failed its bake`,
      };
    case "kept":
      return { rollBack: false, why: "it passed its checks" };
  }
}

/**
 * A wave's bake, judged as one: when any host failed it, every host the wave changed goes back,
 * each with its reason (its own failure, or the first host that failed); none when all passed.
 */
export function decideWaveRollback(
  changed: readonly string[],
  failed: ReadonlyMap<string, BakeFailure>,
): Map<string, RollbackDecision & { readonly cause: FailureCause }> {
  const decisions = new Map<string, RollbackDecision & { readonly cause: FailureCause }>();
  const [first] = failed.keys();
  if (first === undefined) return decisions;
  for (const host of changed) {
    const failure = failed.get(host);
    decisions.set(
      host,
      failure === undefined
        ? {
            ...decideRollback({ kind: "wave-failed", host: first }),
            cause: { kind: "wave", host: first },
          }
        : { ...decideRollback({ kind: "bake-failed", failure }), cause: failure },
    );
  }
  return decisions;
}

/** A failed bake in one line: what failed, with the values that failed it. */
export function bakeFailureText(failure: BakeFailure): string {
  const parts = [
    ...(failure.check === undefined ? [] : [`check ${failure.check.message}`]),
    ...failure.analysis.map((a) => `analysis ${a.why} (${a.condition}; values ${valuesText(a)})`),
  ];
  return `failed its bake after ${Math.round(failure.at)}s: ${parts.join("; ") || "no reason"}`;
}

/** The last few values a query measured, oldest first ("-" for no data). */
function valuesText(analysis: FailedAnalysis): string {
  const shown = analysis.measurements
    .slice(-8)
    .map((m) => (m.value === null ? "-" : formatValue(m.value)));
  const more = analysis.measurements.length > 8 ? "…, " : "";
  return `${more}${shown.join(", ")}`;
}
