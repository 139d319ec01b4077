// A deploy run as the deploy command shows it (progress, the plan, the summary; NDJSON with
// --json), interrupts trapped: `deploy`, and `rollback` of a rollout, run through it.
import { deploy } from "../deploy/deploy.js";
import type { DeployOptions, DeployReport } from "../deploy/deploy-options.js";
import type { DeployEvent } from "../deploy/events.js";
import { runsAfter } from "../deploy/runs-after.js";
import type { DeliveryMode } from "../fleet/fleet.js";
import {
  formatFirstInterrupt,
  formatSecondInterrupt,
  HostsInFlight,
} from "../ui/deploy-interrupt.js";
import { createDeployRenderer } from "../ui/deploy-progress.js";
import { formatDeploySummary } from "../ui/deploy-summary.js";
import { formatPlan } from "../ui/plan-format.js";
import { flagWord } from "../util/shell-quote.js";
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
        io.stderr.write(`${rolloutLine(report, report.rollout, shown.again ?? "")}\n`);
        const undoes = options.rollback?.undoes;
        if (undoes !== undefined) {
          const line = unfinishedUndoLine(report, undoes, shown.again ?? "");
          if (line !== undefined) io.stderr.write(`${line}\n`);
        }
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

/**
 * The rollout's id, and how to undo it where it changed a host that ran a system before it
 * (a host it left as it was, that went back, or that ran nothing nixship could name has nothing
 * to go back to).
 */
export function rolloutLine(report: DeployReport, id: string, again: string): string {
  const before = new Map(report.plan.hosts.map((h) => [h.host, h.current]));
  const changed = report.results.filter((r) => {
    if (r.outcome.status === "activated") return true;
    const ran = before.get(r.host);
    return r.outcome.status === "failed" && runsAfter(r, ran, report.plan.action) !== ran;
  });
  if (changed.length === 0) return `rollout ${id}`;
  if (changed.every((r) => before.get(r.host) === undefined)) {
    return `rollout ${id} (its hosts ran no system nixship could name before it: nothing to undo it to)`;
  }
  return `rollout ${id} (to undo it: nixship rollback --rollout ${id}${again})`;
}

/**
 * For a rollback that did not send back every host it was to (interrupted, unreachable,
 * failed): the rollout it undoes still stands for those, and the command that finishes it.
 */
export function unfinishedUndoLine(
  report: DeployReport,
  undoes: string,
  again: string,
): string | undefined {
  const back = (r: DeployReport["results"][number]) =>
    r.outcome.status === "activated" ||
    (r.outcome.status === "skipped" && r.outcome.reason === "up-to-date");
  const notBack = report.results.filter((r) => !back(r));
  // A host refused at its turn was changed since (another operator): running this rollback
  // again refuses it again, so it is named with what sends it back all the same.
  const refused = (r: DeployReport["results"][number]) =>
    r.outcome.status === "skipped" && r.outcome.reason === "refused";
  const left = notBack.filter((r) => !refused(r)).map((r) => r.host);
  const changed = notBack.filter(refused).map((r) => r.host);
  const lines = [
    ...(left.length === 0
      ? []
      : [
          `rollout ${undoes} still stands for ${left.join(", ")}, which this rollback did not send back (to finish it: nixship rollback --rollout ${undoes}${again})`,
        ]),
    ...(changed.length === 0
      ? []
      : [
          `rollout ${undoes} still stands for ${changed.join(", ")}, changed since (refused at its turn): 'nixship rollback --rollout ${undoes} --on ${changed.join(",")} --force${again}' sends ${changed.length === 1 ? "it" : "them"} back all the same`,
        ]),
  ];
  return lines.length === 0 ? undefined : lines.join("\n");
}

/** The flags a command that acts on this one's rollout needs again: --fleet, --key, --release-key. */
export function againFlags(values: {
  readonly fleet?: string | undefined;
  readonly key?: string | undefined;
  readonly "release-key"?: string | undefined;
}): string {
  return [
    flagWord("fleet", values.fleet),
    flagWord("key", values.key),
    flagWord("release-key", values["release-key"]),
  ].join("");
}
