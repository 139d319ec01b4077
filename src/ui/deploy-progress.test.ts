import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { DeployEvent, HostResult } from "../deploy/events.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { StorePath } from "../nix/store-path.js";
import {
  cleanLogLine,
  createDeployRenderer,
  type DeployOutput,
  describeBuildProgress,
  describeEvent,
  truncate,
} from "./deploy-progress.js";

const desired = `/nix/store/${"2".repeat(32)}-example-web-system-v2` as StorePath;

function sink(isTTY: boolean, columns?: number) {
  const chunks: string[] = [];
  const out = {
    isTTY,
    columns,
    write(chunk: string | Uint8Array) {
      chunks.push(String(chunk));
      return true;
    },
  } as unknown as DeployOutput;
  return { out, chunks, text: () => chunks.join("") };
}

/** Plays what was written on a minimal terminal: \r, \n, ESC[nA, ESC[2K, ESC[0J. */
function screen(text: string): string[] {
  const lines: string[] = [""];
  let row = 0;
  let col = 0;
  for (let i = 0; i < text.length; ) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: reading terminal escapes
    const esc = /^\x1b\[(\d*)([AJK])/.exec(text.slice(i));
    if (esc !== null) {
      const n = Number(esc[1] || "0");
      if (esc[2] === "A") row = Math.max(0, row - (n || 1));
      else if (esc[2] === "K" && n === 2) lines[row] = "";
      else if (esc[2] === "J" && n === 0) {
        lines[row] = (lines[row] ?? "").slice(0, col);
        lines.length = row + 1;
      } else throw new Error(`unexpected escape ${JSON.stringify(esc[0])}`);
      i += esc[0].length;
      continue;
    }
    const ch = text[i++] as string;
    if (ch === "\x1b") throw new Error(`unexpected escape at ${i}`);
    if (ch === "\r") col = 0;
    else if (ch === "\n") {
      row++;
      col = 0;
      if (lines[row] === undefined) lines[row] = "";
    } else {
      const line = (lines[row] ?? "").padEnd(col);
      lines[row] = line.slice(0, col) + ch + line.slice(col + 1);
      col++;
    }
  }
  return lines.at(-1) === "" ? lines.slice(0, -1) : lines;
}

const activated = (host: string, generation: number, seconds: number): HostResult => ({
  host,
  outcome: { status: "activated", generation, previous: undefined },
  desired,
  seconds,
});
const failed = (host: string, rolledBack: boolean): HostResult => ({
  host,
  outcome: { status: "failed", phase: "health", message: "status 503", rolledBack },
  desired,
  seconds: 9,
});

const PLAN: DeployPlan = {
  action: "switch",
  hosts: [],
  counts: { activate: 0, skip: 0, unreachable: 0 },
  changes: 0,
  totals: { paths: 0, bytes: 0 },
  distinct: { paths: 0, bytes: 0 },
  waves: [],
};

const EVENTS: DeployEvent[] = [
  { type: "build-start", systems: 2, hosts: 3 },
  {
    type: "build-done",
    seconds: 3.42,
    systems: [
      { spec: ".#web", path: desired, hosts: ["web1", "web2"] },
      { spec: ".#db", path: desired, hosts: ["db1"] },
    ],
  },
  { type: "push-start", cache: "s3://cache" },
  { type: "push-done", seconds: 0.81, pushed: 5, alreadyPresent: 0, fileBytes: 12_300 },
  { type: "plan", plan: PLAN },
  { type: "wave-start", wave: 1, kind: "canary", hosts: ["web1"] },
  { type: "host-phase", host: "web1", phase: "switch", elapsed: 2.1 },
  { type: "host-log", host: "web1", line: "starting the following units: nginx.service" },
  { type: "host-phase", host: "web1", phase: "done", elapsed: 4.2 },
  { type: "host-done", result: activated("web1", 3, 4.2) },
  { type: "wave-start", wave: 2, kind: "main", hosts: ["web2", "db1"] },
  { type: "host-phase", host: "web2", phase: "health", elapsed: 1 },
  { type: "host-done", result: failed("web2", true) },
  { type: "host-done", result: activated("db1", 8, 3) },
  { type: "stopped", reason: "1 host failed (limit 0)", notStarted: ["web3", "web4"] },
  {
    type: "summary",
    ok: false,
    seconds: 12.3,
    results: [activated("web1", 3, 4.2), failed("web2", true)],
  },
];

describe("ndjson", () => {
  it("writes each event as one JSON line with a time, and nothing else", () => {
    const s = sink(true);
    const r = createDeployRenderer(s.out, "ndjson");
    for (const e of EVENTS) r.onEvent(e);
    r.finish();
    const lines = s.text().split("\n");
    expect(lines.pop()).toBe("");
    expect(lines).toHaveLength(EVENTS.length);
    lines.forEach((line, i) => {
      const { time, ...event } = JSON.parse(line);
      expect(event).toEqual(EVENTS[i]);
      expect(new Date(time).toISOString()).toBe(time);
    });
  });
});

describe("ndjson's bake measurements", () => {
  it("writes an infinite value as +Inf, not as null (no data)", () => {
    const s = sink(true);
    const r = createDeployRenderer(s.out, "ndjson");
    r.onEvent({
      type: "bake-measure",
      host: "web1",
      name: "errors",
      query: 'errors{host="web1"}',
      condition: "at most 0.05",
      measurement: {
        at: 2,
        value: Number.POSITIVE_INFINITY,
        verdict: "fail",
        why: "+Inf is above the maximum 0.05",
      },
    });
    r.finish();
    expect(JSON.parse(s.text()).measurement).toMatchObject({ value: "+Inf", verdict: "fail" });
  });
});

describe("plain", () => {
  const run = (mode: "plain" | "auto", isTTY: boolean) => {
    const s = sink(isTTY);
    const r = createDeployRenderer(s.out, mode);
    for (const e of EVENTS) r.onEvent(e);
    r.finish();
    return s.text();
  };

  it("writes one line per meaningful event, prefixed by the host", () => {
    expect(run("plain", true).split("\n")).toEqual([
      "building the systems of 3 hosts (2 definitions)",
      "built 2 systems in 3.4s",
      "pushing to s3://cache",
      "pushed 5 paths (12.3 kB) in 0.8s",
      "wave 1 (canary): web1",
      "web1: switch (2.1s)",
      "web1: starting the following units: nginx.service",
      "web1: activated, generation 3 (4.2s)",
      "wave 2 (main): web2, db1",
      "web2: health (1.0s)",
      "web2: FAILED in health: status 503; rolled back",
      "db1: activated, generation 8 (3.0s)",
      "stopped: 1 host failed (limit 0); not started: web3, web4",
      "",
    ]);
  });

  it("says how the running systems' closures were read from the cache, and a bound hit", () => {
    const run = (stopped: boolean) => {
      const s = sink(false);
      const r = createDeployRenderer(s.out, "plain");
      r.onEvent({ type: "diff-read", narinfos: 12, seconds: 0.25, limit: 200_000, stopped });
      return s.text();
    };
    expect(run(false)).toBe(
      "read 12 narinfos of the running systems' closures from the cache in 0.3s\n",
    );
    expect(run(true)).toContain("in 0.3s; stopped at the bound of 200000\n");
  });

  it("tells a host's phase once when it is told again", () => {
    const s = sink(false);
    const r = createDeployRenderer(s.out, "plain");
    r.onEvent({ type: "host-phase", host: "web1", phase: "health", elapsed: 0.1 });
    r.onEvent({ type: "host-phase", host: "web1", phase: "health", elapsed: 0.1 });
    r.onEvent({ type: "host-phase", host: "web2", phase: "health", elapsed: 0.2 });
    r.onEvent({ type: "host-phase", host: "web1", phase: "confirm", elapsed: 0.3 });
    expect(s.text()).toBe("web1: health (0.1s)\nweb2: health (0.2s)\nweb1: confirm (0.3s)\n");
  });

  it("is what auto gives when the output is not a terminal", () => {
    expect(run("auto", false)).toBe(run("plain", false));
  });

  it("says when a failed host was not rolled back, and cleans log lines", () => {
    const s = sink(false);
    const r = createDeployRenderer(s.out, "auto");
    r.onEvent({ type: "host-log", host: "web1", line: "\x1b[1;31merror:\x1b[0m unit failed\r" });
    r.onEvent({ type: "host-log", host: "web1", line: "   " });
    r.onEvent({ type: "host-done", result: failed("web1", false) });
    expect(s.text()).toBe(
      "web1: error: unit failed\nweb1: FAILED in health: status 503; not rolled back\n",
    );
  });
});

describe("a build host's closures", () => {
  const lines = (events: DeployEvent[]) => {
    const s = sink(false);
    const r = createDeployRenderer(s.out, "plain");
    for (const e of events) r.onEvent(e);
    r.finish();
    return s.text().trim().split("\n");
  };
  const built = (closures: Extract<DeployEvent, { type: "build-done" }>["closures"]) =>
    ({
      type: "build-done",
      seconds: 2,
      systems: [{ spec: ".#web", path: desired, hosts: ["web1"] }],
      buildHost: "ssh-ng://bh",
      closures,
    }) as const;

  it("says when they were pushed from the build host, and signed here", () => {
    expect(
      lines([
        built({ way: "from-host", nixship: "0.1.0" }),
        { type: "push-start", cache: "s3://c", from: "ssh-ng://bh" },
        {
          type: "push-done",
          seconds: 1,
          pushed: 3,
          alreadyPresent: 1,
          fileBytes: 1000,
          from: "ssh-ng://bh",
        },
      ]),
    ).toEqual([
      "built 1 system in 2.0s on ssh-ng://bh; its closure stays there, pushed from ssh-ng://bh (nixship 0.1.0 there) and signed here",
      "pushing to s3://c from ssh-ng://bh (signed here)",
      "pushed 3 paths (1.00 kB) from ssh-ng://bh in 1.0s; 1 already there",
    ]);
  });

  it("says when they were copied back, and why", () => {
    expect(
      lines([built({ way: "copied-back", why: "nixship is not installed on ssh-ng://bh" })]),
    ).toEqual([
      "built 1 system in 2.0s on ssh-ng://bh; copied back to the deployer for the push (nixship is not installed on ssh-ng://bh)",
    ]);
  });
});

describe("terminal", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("redraws the wave in place and leaves each wave's final lines", () => {
    const s = sink(true, 80);
    const r = createDeployRenderer(s.out, "auto");
    for (const e of EVENTS.slice(0, 6)) r.onEvent(e);
    vi.advanceTimersByTime(200);
    r.onEvent({ type: "host-phase", host: "web1", phase: "switch", elapsed: 2.1 });
    vi.advanceTimersByTime(200);
    r.onEvent({ type: "host-log", host: "web1", line: "starting nginx.service" });
    vi.advanceTimersByTime(200);

    expect(s.text()).toContain("\x1b[1A");
    expect(s.text()).toContain("\x1b[2K");
    let shown = screen(s.text());
    expect(shown.at(-2)).toBe("wave 1 (canary): web1");
    expect(shown.at(-1)).toMatch(/^web1 {2}switch {4}\s+2s {2}starting nginx\.service$/);

    for (const e of EVENTS.slice(6)) r.onEvent(e);
    r.finish();
    shown = screen(s.text());
    expect(shown).toEqual([
      "building the systems of 3 hosts (2 definitions)",
      "built 2 systems in 3.4s",
      "pushing to s3://cache",
      "pushed 5 paths (12.3 kB) in 0.8s",
      "wave 1 (canary): web1",
      "web1  activated, generation 3 (4.2s)",
      "wave 2 (main): web2, db1",
      "web2  FAILED in health: status 503; rolled back",
      "db1   activated, generation 8 (3.0s)",
      "stopped: 1 host failed (limit 0); not started: web3, web4",
    ]);
    // Nothing of the finished waves is erased by what follows.
    expect(s.text().split("\x1b[0J")).toHaveLength(1);
  });

  it("throttles redraws but always draws a host finishing", () => {
    const s = sink(true);
    const r = createDeployRenderer(s.out, "auto");
    r.onEvent({ type: "wave-start", wave: 1, kind: "main", hosts: ["a", "b"] });
    const before = s.chunks.length;
    for (let i = 0; i < 20; i++) r.onEvent({ type: "host-log", host: "a", line: `line ${i}` });
    expect(s.chunks.length).toBe(before);
    vi.advanceTimersByTime(100);
    expect(s.chunks.length).toBe(before + 1);
    expect(screen(s.text()).at(-2)).toContain("line 19");

    r.onEvent({ type: "host-log", host: "b", line: "hello" });
    r.onEvent({ type: "host-done", result: activated("b", 1, 1) });
    expect(s.chunks.length).toBe(before + 2);
    expect(screen(s.text()).at(-1)).toBe("b  activated, generation 1 (1.0s)");
    r.finish();
  });

  it("advances the elapsed time while nothing happens", () => {
    const s = sink(true);
    const r = createDeployRenderer(s.out, "auto");
    r.onEvent({ type: "wave-start", wave: 1, kind: "main", hosts: ["a"] });
    r.onEvent({ type: "host-phase", host: "a", phase: "copy", elapsed: 0 });
    vi.advanceTimersByTime(65_000);
    expect(screen(s.text()).at(-1)).toMatch(/^a {2}copy\s+1m05s$/);
    r.finish();
    const written = s.chunks.length;
    vi.advanceTimersByTime(5000);
    expect(s.chunks.length).toBe(written);
  });

  it("cuts host lines to the terminal width", () => {
    const s = sink(true, 40);
    const r = createDeployRenderer(s.out, "auto");
    r.onEvent({ type: "wave-start", wave: 1, kind: "main", hosts: ["web1"] });
    r.onEvent({ type: "host-phase", host: "web1", phase: "realise", elapsed: 1 });
    vi.advanceTimersByTime(200);
    r.onEvent({ type: "host-log", host: "web1", line: `copying ${"x".repeat(100)}` });
    vi.advanceTimersByTime(200);
    const last = screen(s.text()).at(-1) ?? "";
    expect(last).toHaveLength(39);
    expect(last.startsWith("web1  realise")).toBe(true);
    expect(last.endsWith("...")).toBe(true);
    r.finish();
  });

  it("shows the build's progress as one line drawn again in place, then what was built", () => {
    const s = sink(true, 80);
    const r = createDeployRenderer(s.out, "auto");
    const progress = (seconds: number, done: number): DeployEvent => ({
      type: "build-progress",
      done,
      expected: 2,
      failed: 0,
      building: 1,
      running: [{ name: "kernel-6.6", drv: "/nix/store/x-kernel-6.6.drv", seconds }],
    });
    r.onEvent({ type: "build-start", systems: 1, hosts: 2 });
    r.onEvent(progress(2, 0));
    vi.advanceTimersByTime(200);
    r.onEvent(progress(17, 1));
    vi.advanceTimersByTime(200);
    expect(screen(s.text())).toEqual([
      "building the systems of 2 hosts (1 definition)",
      "building kernel-6.6 (17.0s); 1 of 2 derivations built",
    ]);
    r.onEvent({ type: "build-done", seconds: 20, systems: [] });
    expect(screen(s.text())).toEqual([
      "building the systems of 2 hosts (1 definition)",
      "built 0 systems in 20.0s",
    ]);
    r.finish();
  });

  it("prints the build's progress as lines on a pipe", () => {
    const s = sink(false);
    const r = createDeployRenderer(s.out, "auto");
    r.onEvent({
      type: "build-progress",
      done: 0,
      expected: 3,
      failed: 0,
      building: 2,
      running: [{ name: "a", drv: "/nix/store/x-a.drv", machine: "ssh-ng://b1", seconds: 4 }],
    });
    expect(s.text()).toBe(
      "  building a on ssh-ng://b1 (4.0s) and 1 more; 0 of 3 derivations built\n",
    );
  });

  it("counts a failed derivation in the whole and not as built, as Nix reports it", () => {
    const counts = (done: number, expected: number, failed: number) =>
      describeBuildProgress({
        type: "build-progress",
        done,
        expected,
        failed,
        building: 0,
        running: [],
      });
    // Nix's counts after its one derivation failed, after one of two did, and a success.
    expect(counts(0, 0, 1)).toBe("  0 of 1 derivations built, 1 failed");
    expect(counts(1, 1, 1)).toBe("  1 of 2 derivations built, 1 failed");
    expect(counts(1, 1, 0)).toBe("  1 of 1 derivation built");
    expect(counts(0, 0, 0)).toBe("  building");
  });

  it("assumes 100 columns when a pseudo-terminal reports 0", () => {
    const s = sink(true, 0);
    const r = createDeployRenderer(s.out, "auto");
    r.onEvent({ type: "wave-start", wave: 1, kind: "main", hosts: ["web1"] });
    r.onEvent({ type: "host-phase", host: "web1", phase: "realise", elapsed: 1 });
    vi.advanceTimersByTime(200);
    r.onEvent({ type: "host-log", host: "web1", line: `copying ${"x".repeat(200)}` });
    vi.advanceTimersByTime(200);
    expect(screen(s.text()).at(-1)).toHaveLength(99);
    r.finish();
  });

  it("copes with unknown hosts and events out of order", () => {
    const s = sink(true);
    const r = createDeployRenderer(s.out, "auto");
    expect(() => {
      r.onEvent({ type: "host-log", host: "ghost", line: "boo" });
      r.onEvent({ type: "host-done", result: activated("early", 1, 1) });
      r.onEvent({ type: "wave-start", wave: 1, kind: "main", hosts: ["a"] });
      r.onEvent({ type: "host-done", result: activated("a", 2, 1) });
      r.onEvent({ type: "host-phase", host: "a", phase: "switch", elapsed: 1 });
      r.onEvent({ type: "host-done", result: failed("b", true) });
      r.finish();
      r.finish();
    }).not.toThrow();
    const shown = screen(s.text());
    expect(shown).toContain("early  activated, generation 1 (1.0s)");
    expect(shown.some((line) => /^ghost {2}waiting +boo$/.test(line))).toBe(true);
    expect(shown).toContain("a  activated, generation 2 (1.0s)");
    expect(shown).toContain("b  FAILED in health: status 503; rolled back");
    expect(shown.some((line) => line.includes("switch"))).toBe(false);
  });
});

describe("cleanLogLine", () => {
  it("drops escapes and control characters and keeps what a terminal shows last", () => {
    expect(cleanLogLine("\x1b[32mok\x1b[0m\tdone")).toBe("ok  done");
    expect(cleanLogLine("10%\r50%\r100%\r")).toBe("100%");
    expect(cleanLogLine("\x1b]0;title\x07bell\x07")).toBe("bell");
  });
});

describe("truncate", () => {
  it("keeps short text and marks a cut", () => {
    expect(truncate("abc", 3)).toBe("abc");
    expect(truncate("abcdef", 5)).toBe("ab...");
  });
});

describe("a big rollout", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const name = (i: number) => `lab${String(i + 1).padStart(4, "0")}`;
  // 200 hosts: a canary, then waves of 10 (parallel 10), as the lab's bench runs them.
  const waves = [
    { wave: 1, kind: "canary" as const, hosts: [name(0)] },
    ...Array.from({ length: 20 }, (_, w) => ({
      wave: w + 2,
      kind: "main" as const,
      hosts: Array.from({ length: w === 19 ? 9 : 10 }, (_, i) => name(1 + w * 10 + i)),
    })),
  ];
  const plan: DeployPlan = { ...PLAN, waves };
  const unreachable = (host: string): HostResult => ({
    host,
    outcome: { status: "skipped", reason: "unreachable", message: "no route to host" },
    desired,
    seconds: 0,
  });
  /** The first two waves: the canary done, the second with hosts in three phases, two bad. */
  const play = (r: ReturnType<typeof createDeployRenderer>) => {
    r.onEvent({ type: "plan", plan });
    r.onEvent({ type: "wave-start", ...(waves[0] as (typeof waves)[number]) });
    r.onEvent({ type: "host-phase", host: "lab0001", phase: "copy", elapsed: 1 });
    r.onEvent({ type: "host-done", result: activated("lab0001", 2, 3) });
    r.onEvent({ type: "wave-start", ...(waves[1] as (typeof waves)[number]) });
    const phases: [string, "copy" | "switch" | "health", number][] = [
      ["lab0002", "copy", 5],
      ["lab0003", "switch", 12],
      ["lab0004", "health", 30],
      ["lab0005", "switch", 8],
      ["lab0008", "copy", 1],
      ["lab0009", "copy", 1],
      ["lab0010", "copy", 1],
      ["lab0011", "copy", 1],
    ];
    for (const [host, phase, elapsed] of phases) {
      r.onEvent({ type: "host-phase", host, phase, elapsed });
      r.onEvent({ type: "host-log", host, line: `a log line of ${host}` });
    }
    r.onEvent({ type: "host-done", result: failed("lab0006", true) });
    r.onEvent({ type: "host-done", result: unreachable("lab0007") });
  };

  it("draws one line of counts and the three slowest on a terminal, and prints failures", () => {
    const s = sink(true, 200);
    const r = createDeployRenderer(s.out, "auto");
    play(r);
    vi.advanceTimersByTime(200);
    expect(screen(s.text())).toEqual([
      "lab0006: FAILED in health: status 503; rolled back",
      "lab0007: unreachable: no route to host",
      "wave 2 of 21: 3 of 200 hosts done (1 activated, 1 failed, 1 unreachable); 5 copy, 2 switch, 1 health; slowest: lab0004 health 30s, lab0003 switch 12s, lab0005 switch 8s",
    ]);
    // The rest of the rollout: every host done, the line counts them all and stays.
    for (const w of waves.slice(2)) {
      r.onEvent({ type: "wave-start", ...w });
      for (const host of w.hosts) r.onEvent({ type: "host-done", result: activated(host, 2, 3) });
    }
    for (const host of ["lab0002", "lab0003", "lab0004", "lab0005", "lab0008", "lab0009"]) {
      r.onEvent({ type: "host-done", result: activated(host, 2, 3) });
    }
    r.onEvent({ type: "host-done", result: activated("lab0010", 2, 3) });
    r.onEvent({ type: "host-done", result: activated("lab0011", 2, 3) });
    r.finish();
    expect(screen(s.text())).toEqual([
      "lab0006: FAILED in health: status 503; rolled back",
      "lab0007: unreachable: no route to host",
      "wave 21 of 21: 200 of 200 hosts done (198 activated, 1 failed, 1 unreachable)",
    ]);
  });

  it("turns to one line for a wave of more than 20 hosts, even without the plan", () => {
    const s = sink(true, 200);
    const r = createDeployRenderer(s.out, "auto");
    const hosts = Array.from({ length: 21 }, (_, i) => name(i));
    r.onEvent({ type: "wave-start", wave: 1, kind: "main", hosts });
    r.onEvent({ type: "host-phase", host: "lab0003", phase: "realise", elapsed: 4 });
    vi.advanceTimersByTime(200);
    expect(screen(s.text())).toEqual([
      "wave 1: 0 of 21 hosts done; 20 waiting, 1 realise; slowest: lab0003 realise 4s",
    ]);
    r.finish();
  });

  it("keeps a small rollout's line per host", () => {
    const s = sink(true, 200);
    const r = createDeployRenderer(s.out, "auto");
    const hosts = Array.from({ length: 20 }, (_, i) => name(i));
    r.onEvent({ type: "wave-start", wave: 1, kind: "main", hosts });
    vi.advanceTimersByTime(200);
    expect(screen(s.text())).toHaveLength(21);
    r.finish();
  });

  it("prints each host's result on a pipe but none of its phases or logs, and names waves briefly", () => {
    const s = sink(false);
    const r = createDeployRenderer(s.out, "auto");
    play(r);
    r.onEvent({ type: "stopped", reason: "2 hosts failed", notStarted: waves[2]?.hosts ?? [] });
    r.onEvent({
      type: "wave-start",
      wave: 3,
      kind: "main",
      hosts: Array.from({ length: 30 }, (_, i) => name(i)),
    });
    const lines = s.text().trim().split("\n");
    expect(lines.filter((l) => / \(\d+\.\ds\)$/.test(l) && !/activated/.test(l))).toEqual([]);
    expect(lines).toEqual([
      "wave 1 (canary): lab0001",
      "lab0001: activated, generation 2 (3.0s)",
      "wave 2 (main): lab0002, lab0003, lab0004, lab0005, lab0006 and 5 more (10 hosts)",
      "lab0006: FAILED in health: status 503; rolled back",
      "lab0007: unreachable: no route to host",
      "stopped: 2 hosts failed; not started: lab0012, lab0013, lab0014, lab0015, lab0016, lab0017, lab0018, lab0019, lab0020, lab0021",
      "wave 3 (main): lab0001, lab0002, lab0003, lab0004, lab0005 and 25 more (30 hosts)",
    ]);
  });
});

describe("a wave's wait for deltas", () => {
  it("says how long at most, and the two paces it is judged by", () => {
    expect(
      describeEvent({
        type: "deltas-wait",
        wave: 1,
        pendingBytes: 250_000_000,
        bytesPerSecond: 16_000_000,
        rebuiltBytesPerSecond: 96_000_000,
        seconds: 13,
      }),
    ).toBe(
      "wave 1: waiting at most 13.0s for deltas of 250.0 MB of NAR (fetched whole at 16.0 MB/s they take that much longer than rebuilt from deltas at 96.0 MB/s)",
    );
  });
});
