// A deploy run as the deploy command shows it (progress, the plan, the summary; NDJSON with
// --json), interrupts trapped: `deploy`, and `rollback` of a rollout, run through it.
import { deploy } from "../deploy/deploy.js";
import type { DeployOptions, DeployReport } from "../deploy/deploy-options.js";
import type { DeployEvent } from "../deploy/events.js";
import type { DeliveryMode } from "../fleet/fleet.js";
import {
  formatFirstInterrupt,
  formatSecondInterrupt,
  HostsInFlight,
} from "../ui/deploy-interrupt.js";
import { createDeployRenderer } from "../ui/deploy-progress.js";
import { formatDeploySummary } from "../ui/deploy-summary.js";
import { formatPlan } from "../ui/plan-format.js";
import type { Command } from "./command.js";
import { exitSoonAfterInterrupt, INTERRUPTED_EXIT, trapInterrupts } from "./interrupts.js";

/** The summary a deploy emits last. */
export type SummaryEvent = Extract<DeployEvent, { type: "summary" }>;

/**
 * Runs a deploy as the deploy command shows it (progress, the plan, the summary; NDJSON with
 * `json`), interrupts trapped: `rollback` of a rollout runs through it too. The exit code is 0
 * when the deploy went through, 1 otherwise, INTERRUPTED_EXIT when interrupted.
 */
export async function rollOut(
  io: Parameters<Command["run"]>[1],
  shown: {
    readonly json: boolean;
    readonly diff: boolean;
    readonly mode: DeliveryMode;
    /**
     * With `json`: the summary event is not printed but returned, for the caller to print once
     * what follows the deploy (an abort's rollback) is known.
     */
    readonly holdSummary?: boolean;
    /** The options a command to undo the rollout needs as this one was given (` --fleet F`). */
    readonly again?: string;
  },
  options: Omit<DeployOptions, "emit" | "signal">,
): Promise<{
  readonly report: DeployReport | undefined;
  readonly code: number;
  readonly summary?: SummaryEvent;
}> {
  const started = performance.now();
  const renderer = createDeployRenderer(
    shown.json ? io.stdout : io.stderr,
    shown.json ? "ndjson" : "auto",
  );
  const inFlight = new HostsInFlight();
  let summary: SummaryEvent | undefined;
  const emit = (e: DeployEvent) => {
    inFlight.onEvent(e);
    if (shown.json && shown.holdSummary === true && e.type === "summary") {
      summary = e;
      return;
    }
    renderer.onEvent(e);
    if (!shown.json && e.type === "plan") {
      io.stderr.write(`${formatPlan(e.plan, { diff: shown.diff })}\n`);
    }
  };
  const { mode } = shown;
  const { action, policy } = options;
  const trap = trapInterrupts({
    first: (signal) => {
      // A live block on a terminal would draw over the line: it ends here, and stays.
      renderer.finish();
      io.stderr.write(`${formatFirstInterrupt(signal, inFlight.hosts, mode)}\n`);
    },
    second: (signal) => {
      renderer.finish();
      io.stderr.write(
        `${formatSecondInterrupt(signal, inFlight.hosts, { mode, action, policy }, inFlight.baking)}\n`,
      );
    },
  });
  try {
    const report = await deploy({ ...options, emit, signal: trap.signal }).finally(() =>
      renderer.finish(),
    );
    for (const note of report.channelNotes) io.stderr.write(`note: ${note}\n`);
    if (!shown.json) {
      io.stderr.write(
        `${formatDeploySummary(report.results, (performance.now() - started) / 1000, report.plan)}\n`,
      );
      if (report.rollout !== undefined) {
        // Only a rollout that changed a host has something to undo.
        const changed = report.results.some(
          (r) => r.outcome.status === "activated" || r.outcome.status === "failed",
        );
        io.stderr.write(
          changed
            ? `rollout ${report.rollout} (to undo it: nixship rollback --rollout ${report.rollout}${shown.again ?? ""})\n`
            : `rollout ${report.rollout}\n`,
        );
      }
    }
    const held = summary === undefined ? {} : { summary };
    if (trap.signal.aborted) return { report, code: INTERRUPTED_EXIT, ...held };
    return { report, code: report.ok ? 0 : 1, ...held };
  } finally {
    trap.release();
    if (trap.signal.aborted) exitSoonAfterInterrupt();
  }
}
