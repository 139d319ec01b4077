// The benchmark's figures: runs summarised per tool and compression, the comparison table,
// the nix copy / nixship ratios and the targets, as plain text.
import type { Measurement } from "./measure.js";
import { mb, median, table } from "./stats.js";
import type { ClosureStats } from "./synthetic-closure.js";

/**
 * "nixship" is the default (each object fsynced before it counts as written, one worker thread
 * per core); "nixship nosync" pushes to `file://DIR?fsync=false`, the same durability as
 * `nix copy`, which never fsyncs; "nixship 1 job" is the default on one worker thread
 * (`--jobs 1`), like `nix copy`, which works on one core: its CPU is the like-for-like one.
 * "nix copy" is the machine's Nix (Debian 12's 2.8); "nix copy current" the current Nix
 * (Debian 13's 2.26, scripts/current-nix.sh), the newest peer here: the targets are against it.
 */
export const TOOLS = [
  "nixship",
  "nixship nosync",
  "nixship 1 job",
  "nix copy",
  "nix copy current",
] as const;
const PEERS = ["nix copy", "nix copy current"] as const;
/** The peer the targets are judged against: the newest Nix to be had here. */
const PEER = "nix copy current";
export const COMPRESSIONS = ["zstd", "none"] as const;
const RSS_TARGET = 300e6;

export type Tool = (typeof TOOLS)[number];
type Peer = (typeof PEERS)[number];

export function isNixship(tool: Tool): boolean {
  return !(PEERS as readonly Tool[]).includes(tool);
}
export type Compression = (typeof COMPRESSIONS)[number];

export interface Sample {
  readonly tool: Tool;
  readonly compression: Compression;
  readonly m: Measurement;
  readonly outputBytes: number;
  /** Which round of the runs (0-based): one run of each variant per round. */
  readonly round: number;
  /** The 1-minute load average as the run started. */
  readonly load: number;
}

export interface Variant {
  readonly tool: Tool;
  readonly compression: Compression;
  readonly bestSeconds: number;
  readonly medianSeconds: number;
  readonly worstSeconds: number;
  readonly medianCpuSeconds: number;
  /** The least and most CPU seconds of a run. */
  readonly cpuRange: readonly [number, number];
  /** The least and most load average at the start of a run. */
  readonly loadRange: readonly [number, number];
  /** Maxima over the runs. */
  readonly maxRssBytes: number;
  readonly treePeakRssBytes: number;
  readonly outputBytes: number;
}

export function summarise(samples: readonly Sample[]): Variant[] {
  return COMPRESSIONS.flatMap((compression) =>
    TOOLS.map((tool) => {
      const mine = samples.filter((s) => s.tool === tool && s.compression === compression);
      const seconds = mine.map((s) => s.m.seconds);
      const cpu = mine.map((s) => s.m.cpuSeconds ?? Number.NaN);
      return {
        tool,
        compression,
        bestSeconds: seconds.length > 0 ? Math.min(...seconds) : Number.NaN,
        medianSeconds: median(seconds),
        worstSeconds: seconds.length > 0 ? Math.max(...seconds) : Number.NaN,
        medianCpuSeconds: median(cpu),
        cpuRange: range(cpu),
        loadRange: range(mine.map((s) => s.load)),
        maxRssBytes: Math.max(...mine.map((s) => s.m.maxRssBytes ?? Number.NaN)),
        treePeakRssBytes: Math.max(...mine.map((s) => s.m.treePeakRssBytes)),
        outputBytes: Math.max(...mine.map((s) => s.outputBytes)),
      };
    }),
  );
}

/** One figure of a variant (NaN when it did not run). */
export function figure(
  variants: readonly Variant[],
  tool: Tool,
  c: Compression,
  of: (v: Variant) => number,
): number {
  const v = variants.find((x) => x.tool === tool && x.compression === c);
  return v ? of(v) : Number.NaN;
}

export function report(measured: readonly Variant[], stats: ClosureStats): string {
  const variants = measured.filter((v) => Number.isFinite(v.medianSeconds));
  const header = ["tool", "compr.", "best s", "median s", "worst s", "median MB/s"];
  header.push("median CPU s", "CPU s range", "load range", "max RSS 1 proc", "tree peak RSS");
  header.push("output");
  const rows = variants.map((v) => [
    v.tool,
    v.compression,
    v.bestSeconds.toFixed(2),
    v.medianSeconds.toFixed(2),
    v.worstSeconds.toFixed(2),
    (stats.narBytes / 1e6 / v.medianSeconds).toFixed(1),
    v.medianCpuSeconds.toFixed(2),
    `${v.cpuRange[0].toFixed(2)}-${v.cpuRange[1].toFixed(2)}`,
    `${v.loadRange[0].toFixed(1)}-${v.loadRange[1].toFixed(1)}`,
    mb(v.maxRssBytes),
    mb(v.treePeakRssBytes),
    mb(v.outputBytes),
  ]);
  const pick = (tool: Tool, c: Compression, of: (v: Variant) => number): number =>
    figure(variants, tool, c, of);
  const ratio = (
    tool: Tool,
    c: Compression,
    of: (v: Variant) => number,
    peer: Peer = PEER,
  ): number => pick(peer, c, of) / pick(tool, c, of);
  const ratios = (tool: Tool, c: Compression, peer: Peer): string =>
    `${c}  best ${ratio(tool, c, (v) => v.bestSeconds, peer).toFixed(2)}x  median ${ratio(tool, c, (v) => v.medianSeconds, peer).toFixed(2)}x`;
  const rss = Math.max(...variants.filter((v) => isNixship(v.tool)).map((v) => v.treePeakRssBytes));
  const cpuRatio = (c: Compression, tool: Tool = "nixship", peer: Peer = PEER): number =>
    pick(tool, c, (v) => v.medianCpuSeconds) / pick(peer, c, (v) => v.medianCpuSeconds);
  const durabilityCost = (c: Compression): number =>
    pick("nixship", c, (v) => v.medianSeconds) / pick("nixship nosync", c, (v) => v.medianSeconds) -
    1;
  // A target whose figure this run did not measure (--quick, --tools) is "n/a", not a miss.
  const targets: [boolean | undefined, string, string][] = [];
  const judged = (value: number, ok: boolean): boolean | undefined =>
    Number.isNaN(value) ? undefined : ok;
  for (const [c, speedup] of [
    ["zstd", 1.5],
    ["none", 1.2],
  ] as const) {
    const wall = ratio("nixship", c, (v) => v.medianSeconds);
    const cpu = cpuRatio(c);
    const cpuOneJob = cpuRatio(c, "nixship 1 job");
    const cost = durabilityCost(c);
    targets.push(
      [
        judged(wall, wall >= speedup),
        `${c}: nixship at least ${speedup}x faster than ${PEER} (wall)`,
        `${wall.toFixed(2)}x`,
      ],
      [
        judged(cpu, cpu <= 1),
        `${c}: nixship CPU seconds at most ${PEER}'s`,
        `${cpu.toFixed(2)} of ${PEER}'s`,
      ],
      [
        judged(cpuOneJob, cpuOneJob <= 1),
        `${c}: the same on one core each (nixship 1 job)`,
        `${cpuOneJob.toFixed(2)} of ${PEER}'s`,
      ],
      [
        judged(cost, cost <= 0.05),
        `${c}: default durability within 5% of nosync (wall)`,
        `${(100 * cost).toFixed(1)}%`,
      ],
    );
  }
  targets.push([rss < RSS_TARGET, `nixship tree peak RSS under ${mb(RSS_TARGET)}`, mb(rss)]);
  return [
    `Closure: ${stats.paths.length} paths, ${mb(stats.narBytes)} of NAR, ${stats.files} files.`,
    "MB = 10^6 bytes; MB/s = NAR bytes / wall seconds; wall time includes process start-up.",
    "",
    table([header, ...rows], 2),
    "",
    "CPU s: user + system time of the process and its children (GNU time %U + %S).",
    "load range: the 1-minute load average as each run started (2 cores: above 2, other work",
    "took CPU from the runs).",
    "max RSS 1 proc: GNU time %M, the largest RSS of any single process.",
    "nixship makes every object durable by default (a few syncfs group commits, NARs before the",
    "narinfos that name them); nixship nosync uses file://DIR?fsync=false, which like nix copy",
    "leaves flushing to the kernel (same durability as the peer).",
    "tree peak RSS: the RSS of the process and all its children summed, sampled every 50 ms.",
    "RSS and output columns are maxima over the runs.",
    "",
    ...PEERS.flatMap((peer) => [
      `${`${peer} time / nixship time:`.padEnd(46)} ${ratios("nixship", "zstd", peer)}   ${ratios("nixship", "none", peer)}`,
      `${`${peer} time / nixship nosync time:`.padEnd(46)} ${ratios("nixship nosync", "zstd", peer)}   ${ratios("nixship nosync", "none", peer)}`,
      `${`nixship CPU s / ${peer} CPU s:`.padEnd(46)} zstd ${cpuRatio("zstd", "nixship", peer).toFixed(2)}  none ${cpuRatio("none", "nixship", peer).toFixed(2)}`,
      `${`nixship 1 job CPU s / ${peer} CPU s:`.padEnd(46)} zstd ${cpuRatio("zstd", "nixship 1 job", peer).toFixed(2)}  none ${cpuRatio("none", "nixship 1 job", peer).toFixed(2)}`,
    ]),
    `(${PEERS[0]}: the machine's Nix, Debian 12's; ${PEERS[1]}: Debian 13's, in a store of its own.)`,
    "(CPU seconds would not depend on the core count on dedicated cores; on this VM both cores",
    "busy at once cost more CPU for the same work: see the parallel tax below.)",
    "",
    "Targets (on median times; printed, not asserted):",
    ...targets.map(
      ([ok, what, got]) =>
        `  ${ok === undefined ? "n/a " : ok ? "PASS" : "MISS"}  ${what.padEnd(60)} ${ok === undefined ? "not measured in this run" : got}`,
    ),
  ].join("\n");
}

/**
 * Each round's runs side by side: nixship's time against each peer's in the same round (the
 * runs of a round are minutes apart, so they met much the same load), and the ratios' range.
 */
export function reportRounds(samples: readonly Sample[]): string {
  const rounds = [...new Set(samples.map((s) => s.round))].sort((a, b) => a - b);
  const rows: string[][] = [
    ["compr.", "round", "nixship s (CPU s)", ...PEERS.map((p) => `${p} s (CPU s)`), "load"],
  ];
  const ratios = new Map<string, number[]>();
  for (const c of COMPRESSIONS) {
    for (const round of rounds) {
      const at = (tool: Tool) =>
        samples.find((s) => s.tool === tool && s.compression === c && s.round === round);
      const mine = at("nixship");
      if (mine === undefined) continue;
      const cells = PEERS.map((peer) => {
        const theirs = at(peer);
        if (theirs === undefined) return "-";
        const ratio = theirs.m.seconds / mine.m.seconds;
        ratios.set(`${c} ${peer}`, [...(ratios.get(`${c} ${peer}`) ?? []), ratio]);
        return `${theirs.m.seconds.toFixed(2)} (${theirs.m.cpuSeconds?.toFixed(2) ?? "?"}) ${ratio.toFixed(2)}x`;
      });
      const loads = samples
        .filter((s) => s.compression === c && s.round === round)
        .map((s) => s.load);
      const [lo, hi] = range(loads);
      rows.push([
        c,
        String(round + 1),
        `${mine.m.seconds.toFixed(2)} (${mine.m.cpuSeconds?.toFixed(2) ?? "?"})`,
        ...cells,
        `${lo.toFixed(1)}-${hi.toFixed(1)}`,
      ]);
    }
  }
  if (rows.length === 1) return "(no round ran nixship)";
  const lines = [...ratios].map(([what, r]) => {
    const [lo, hi] = range(r);
    return `  ${what} time / nixship time: median ${median(r).toFixed(2)}x, range ${lo.toFixed(2)}-${hi.toFixed(2)}x over ${r.length} rounds`;
  });
  return [
    "Round by round (peer columns: its time, its CPU, and its time / nixship's in that round):",
    table(rows, 2),
    ...lines,
  ].join("\n");
}

/** The least and most of `values` (NaN, NaN for none). */
function range(values: readonly number[]): readonly [number, number] {
  const known = values.filter(Number.isFinite);
  return known.length === 0 ? [Number.NaN, Number.NaN] : [Math.min(...known), Math.max(...known)];
}
