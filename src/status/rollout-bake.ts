// A host's bake as its rollout record keeps it: each query's measurements over time (value,
// baseline, verdict), which condition failed, or which check. Pure: the shape and its strict,
// bounded parsing (rollout.ts reads the rest of the record).
import { InputError } from "../errors.js";
import type { Measurement, Verdict } from "../fleet/analysis.js";
import { MAX_ANALYSIS_QUERIES, MAX_BAKE_ROUNDS } from "../fleet/bake.js";
import type { BakeCheck } from "../fleet/rollback-decision.js";
import { withoutControls } from "../util/text.js";

export const BAKE_STATES = ["baking", "passed", "failed", "interrupted"] as const;
export type BakeState = (typeof BAKE_STATES)[number];

export interface RolloutBake {
  readonly state: BakeState;
  /** Seconds the bake lasts (as planned), and between two rounds. */
  readonly seconds: number;
  readonly interval: number;
  /** The check that failed it (a check of the role, repeated): its URL, or its command. */
  readonly check?: BakeCheck;
  readonly analysis: readonly RolloutAnalysis[];
}

export interface RolloutAnalysis {
  readonly name: string;
  /** The query as sent for the host. */
  readonly query: string;
  /** Its condition in words. */
  readonly condition: string;
  /** Oldest first; at most MAX_BAKE_ROUNDS. */
  readonly measurements: readonly Measurement[];
  /** Why it failed the host (absent: it did not). */
  readonly failed?: string;
}

const VERDICTS: readonly Verdict[] = ["pass", "fail", "no-data"];
/** The longest text a bake's entry keeps (a query, a reason). */
const MAX_TEXT = 4000;

/** A record's `bake` of a host, checked strictly; `where` names it in errors. */
export function parseRolloutBake(value: unknown, source: string, where: string): RolloutBake {
  const b = object(value, source, where);
  const state = b.state;
  if (typeof state !== "string" || !(BAKE_STATES as readonly string[]).includes(state)) {
    throw malformed(source, `${where}.state must be one of ${BAKE_STATES.join(", ")}`);
  }
  const seconds = count(b.seconds, source, `${where}.seconds`);
  const interval = count(b.interval, source, `${where}.interval`);
  let check: RolloutBake["check"];
  if (b.check !== undefined) {
    const c = object(b.check, source, `${where}.check`);
    const message = text(c.message, source, `${where}.check.message`);
    check =
      c.run !== undefined
        ? { run: text(c.run, source, `${where}.check.run`), message }
        : { url: text(c.url, source, `${where}.check.url`), message };
  }
  if (!Array.isArray(b.analysis) || b.analysis.length > MAX_ANALYSIS_QUERIES) {
    throw malformed(source, `${where}.analysis must be a list of at most ${MAX_ANALYSIS_QUERIES}`);
  }
  const analysis = b.analysis.map((a: unknown, i: number) =>
    parseAnalysis(a, source, `${where}.analysis[${i}]`),
  );
  return {
    state: state as BakeState,
    seconds,
    interval,
    ...(check === undefined ? {} : { check }),
    analysis,
  };
}

function parseAnalysis(value: unknown, source: string, where: string): RolloutAnalysis {
  const a = object(value, source, where);
  if (!Array.isArray(a.measurements) || a.measurements.length > MAX_BAKE_ROUNDS) {
    throw malformed(source, `${where}.measurements must be a list of at most ${MAX_BAKE_ROUNDS}`);
  }
  const measurements = a.measurements.map((m: unknown, i: number) =>
    parseMeasurement(m, source, `${where}.measurements[${i}]`),
  );
  return {
    name: text(a.name, source, `${where}.name`),
    query: text(a.query, source, `${where}.query`),
    condition: text(a.condition, source, `${where}.condition`),
    measurements,
    ...(a.failed === undefined ? {} : { failed: text(a.failed, source, `${where}.failed`) }),
  };
}

function parseMeasurement(value: unknown, source: string, where: string): Measurement {
  const m = object(value, source, where);
  // An infinity is stored as PromQL writes it (nonFiniteAsText): JSON has no number for it.
  const number = (v: unknown, key: string): number | null => {
    if (v === null || (typeof v === "number" && Number.isFinite(v))) return v;
    if (v === "+Inf") return Number.POSITIVE_INFINITY;
    if (v === "-Inf") return Number.NEGATIVE_INFINITY;
    throw malformed(source, `${where}.${key} must be a number, "+Inf", "-Inf" or null`);
  };
  if (typeof m.at !== "number" || !Number.isFinite(m.at) || m.at < 0) {
    throw malformed(source, `${where}.at must be seconds`);
  }
  if (typeof m.verdict !== "string" || !(VERDICTS as readonly string[]).includes(m.verdict)) {
    throw malformed(source, `${where}.verdict must be one of ${VERDICTS.join(", ")}`);
  }
  return {
    at: m.at,
    value: number(m.value, "value"),
    ...(m.baseline === undefined ? {} : { baseline: number(m.baseline, "baseline") }),
    verdict: m.verdict as Verdict,
    why: text(m.why, source, `${where}.why`),
    ...(m.notAsked === true ? { notAsked: true as const } : {}),
  };
}

function object(value: unknown, source: string, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw malformed(source, `${where} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function count(value: unknown, source: string, where: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw malformed(source, `${where} must be a whole number`);
  }
  return value;
}

function text(value: unknown, source: string, where: string): string {
  if (typeof value !== "string") throw malformed(source, `${where} must be a string`);
  const clean = withoutControls(value);
  return clean.length > MAX_TEXT ? `${clean.slice(0, MAX_TEXT)}…` : clean;
}

function malformed(source: string, what: string): InputError {
  return new InputError("rollout-malformed", `${source}: ${what}`);
}
