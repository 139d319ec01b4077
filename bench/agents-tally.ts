// What the agents benchmark's processes share: the clock, each client's record of its requests
// (a counting store), the summaries an agent process sends the coordinator of its agents'
// requests, and the fleet's names and systems. Pure but for the clock and the store it wraps.
import { createHash } from "node:crypto";
import type { Activator } from "../src/agent/activator.js";
import { NIX32_ALPHABET } from "../src/nix/nix32.js";
import type { StorePath } from "../src/nix/store-path.js";
import { HEARTBEAT_PREFIX } from "../src/status/heartbeat.js";
import type { GetOptions, ObjectStore } from "../src/store/object-store.js";

export const CHANNEL = "bench";
/** ± fraction of the poll interval each agent draws per wait (the agent config's default). */
export const JITTER = 0.1;

/** Milliseconds on a clock shared by the benchmark's processes (the wall clock's origin). */
export const now = (): number => performance.timeOrigin + performance.now();

export type Op = "get" | "head" | "put" | "list" | "delete";
export interface Req {
  /** now() when the call started. */
  readonly t: number;
  readonly op: Op;
  readonly conditional: boolean;
  /** A GET of a success marker's record: an outcome's generation and previous system. */
  readonly detail: boolean;
  /** A PUT of an agent's heartbeat. */
  readonly heartbeat: boolean;
  result: "pending" | "found" | "not-modified" | "absent" | "written" | "ok" | "error";
}

/** Every request one client made, and when it first wrote a success marker. */
export interface Tally {
  readonly requests: Req[];
  successAt: number | undefined;
}

/** The agents' no-op activation: the whole apply path (state saves, status) but no Nix. */
export const NOOP_ACTIVATOR: Activator = {
  apply: async () => ({ status: "activated", generation: 1 }),
  // (The bench's releases reboot nobody.)
  judgeBoot: async () => ({ status: "activated", generation: 1 }),
  inspect: async () => ({ current: null, profile: null, generation: null }),
};

export function hostNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `host-${String(i + 1).padStart(5, "0")}`);
}

/** A store path per host, as distinct systems would have: 32 nix32 characters from its name. */
export function systemPath(host: string): StorePath {
  const digest = createHash("sha256").update(host).digest();
  const hash = Array.from(digest.subarray(0, 32), (b) => NIX32_ALPHABET[b % 32]).join("");
  return `/nix/store/${hash}-nixos-system-${host}` as StorePath;
}

/** `inner` with every call recorded in `tally`; closing is left to the owner of `inner`. */
export function counting(inner: ObjectStore, tally: Tally): ObjectStore {
  const start = (op: Op, conditional = false, detail = false, heartbeat = false): Req => {
    const req: Req = { t: now(), op, conditional, detail, heartbeat, result: "pending" };
    tally.requests.push(req);
    return req;
  };
  const track = async <T>(req: Req, call: Promise<T>, result: (v: T) => Req["result"]) => {
    try {
      const value = await call;
      req.result = result(value);
      return value;
    } catch (err) {
      req.result = "error";
      throw err;
    }
  };
  return {
    url: inner.url,
    get: ((key: string, options?: GetOptions) =>
      track(
        start("get", options?.ifNoneMatch !== undefined, key.endsWith("/success")),
        inner.get(key, options),
        (v) => (v === undefined ? "absent" : v.status),
      )) as ObjectStore["get"],
    head: (key) => track(start("head"), inner.head(key), (v) => (v ? "found" : "absent")),
    put: async (key, body, options) => {
      const beat = key.startsWith(HEARTBEAT_PREFIX);
      const written = await track(
        start("put", false, false, beat),
        inner.put(key, body, options),
        () => "written",
      );
      if (key.endsWith("/success")) tally.successAt ??= now();
      return written;
    },
    putFile: (key, file, options) =>
      track(start("put"), inner.putFile(key, file, options), () => "written"),
    makeStagingDir: () => inner.makeStagingDir(),
    list: (prefix, options) => track(start("list"), inner.list(prefix, options), () => "ok"),
    delete: (key) => track(start("delete"), inner.delete(key), () => "ok"),
    close: async () => {},
  };
}

/** Requests by kind (a conditional GET apart), counted. */
export function opCounts(requests: readonly Req[]): Record<string, number> {
  const by: Record<string, number> = {};
  for (const r of requests) {
    const name = r.op === "get" && r.conditional ? "conditional GET" : r.op.toUpperCase();
    by[name] = (by[name] ?? 0) + 1;
  }
  return by;
}

export function formatCounts(counts: Readonly<Record<string, number>>): string {
  return Object.entries(counts)
    .map(([k, v]) => `${v} ${k}`)
    .join(", ");
}

export function countOps(requests: readonly Req[]): string {
  return formatCounts(opCounts(requests));
}

/**
 * What some agents did in one window [from, to): enough to sum over the agent processes and
 * still give per-agent extremes (the coordinator's IdleStats).
 */
export interface WindowPart {
  /** Requests each agent started in the window, one number per agent. */
  readonly counts: number[];
  readonly gets: number;
  readonly conditional: number;
  /** The GETs' answers, counted. */
  readonly results: Record<string, number>;
  /** The other requests, by kind. */
  readonly other: Record<string, number>;
  readonly heartbeats: number;
  /** The most heartbeats one agent put in the window. */
  readonly heartbeatsMax: number;
  /** Seconds between two consecutive GETs of one agent inside the window: min, sum, count. */
  readonly gapMin: number | null;
  readonly gapSum: number;
  readonly gapCount: number;
}

export function windowPart(tallies: readonly Tally[], from: number, to: number): WindowPart {
  const counts: number[] = [];
  const results: Record<string, number> = {};
  const otherReqs: Req[] = [];
  let gets = 0;
  let conditional = 0;
  let heartbeats = 0;
  let heartbeatsMax = 0;
  let gapMin = Number.POSITIVE_INFINITY;
  let gapSum = 0;
  let gapCount = 0;
  for (const tally of tallies) {
    const mine = tally.requests.filter((r) => r.t >= from && r.t < to);
    counts.push(mine.length);
    let beats = 0;
    let lastGet: number | undefined;
    for (const r of mine) {
      if (r.heartbeat) beats++;
      if (r.op !== "get") {
        otherReqs.push(r);
        continue;
      }
      gets++;
      if (r.conditional) conditional++;
      results[r.result] = (results[r.result] ?? 0) + 1;
      if (lastGet !== undefined) {
        const gap = (r.t - lastGet) / 1000;
        gapMin = Math.min(gapMin, gap);
        gapSum += gap;
        gapCount++;
      }
      lastGet = r.t;
    }
    heartbeats += beats;
    heartbeatsMax = Math.max(heartbeatsMax, beats);
  }
  return {
    counts,
    gets,
    conditional,
    results,
    other: opCounts(otherReqs),
    heartbeats,
    heartbeatsMax,
    gapMin: gapCount > 0 ? gapMin : null,
    gapSum,
    gapCount,
  };
}

/** The parts of every agent process as one. */
export function mergeWindowParts(parts: readonly WindowPart[]): WindowPart {
  const add = (a: Record<string, number>, b: Readonly<Record<string, number>>) => {
    for (const [k, v] of Object.entries(b)) a[k] = (a[k] ?? 0) + v;
    return a;
  };
  const mins = parts.flatMap((p) => (p.gapMin === null ? [] : [p.gapMin]));
  return {
    counts: parts.flatMap((p) => p.counts),
    gets: sum(parts.map((p) => p.gets)),
    conditional: sum(parts.map((p) => p.conditional)),
    results: parts.reduce((a, p) => add(a, p.results), {} as Record<string, number>),
    other: parts.reduce((a, p) => add(a, p.other), {} as Record<string, number>),
    heartbeats: sum(parts.map((p) => p.heartbeats)),
    heartbeatsMax: Math.max(0, ...parts.map((p) => p.heartbeatsMax)),
    gapMin: mins.length > 0 ? Math.min(...mins) : null,
    gapSum: sum(parts.map((p) => p.gapSum)),
    gapCount: sum(parts.map((p) => p.gapCount)),
  };
}

export function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
