// The fleet benchmark's scale curve as a picture: four small charts (wall time, the deployer's
// CPU per host, its peak RSS, SSH handshakes per host) against the fleet's size (a log scale:
// 20 to 1,000 hosts), drawn as SVG and saved as a PNG by Debian's Chromium (playwright-core,
// nothing downloaded).
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** One lab size's small change, as bench/fleet.ts measured it (medians over runs). */
export interface ScalePoint {
  /** nixship-first: nixship's first deploy to fresh hosts (where a size has no small change). */
  readonly tool: "nixship" | "loop" | "nixship-first";
  readonly hosts: number;
  readonly wallSeconds: number;
  readonly deployerCpuMsPerHost: number | undefined;
  readonly deployerRssMb: number | undefined;
  readonly deployerPssMb: number | undefined;
  readonly hostsCpuMsPerHost: number | undefined;
  readonly handshakesPerHost: number;
  /** The deployer-side CPU of one login at this size (`ssh ... HOST true`), ms. */
  readonly loginCpuMs?: number | undefined;
}

interface Chart {
  readonly title: string;
  readonly unit: string;
  readonly value: (p: ScalePoint) => number | undefined;
  /** A target line, where a target is set. */
  readonly target?: number;
  /**
   * A target that depends on the size (drawn through nixship's points, from the point and all
   * the points: the loop's at the same size), and its name.
   */
  readonly targetOf?: {
    readonly value: (p: ScalePoint, all: readonly ScalePoint[]) => number | undefined;
    readonly name: string;
  };
  /** A second figure of each tool, drawn dashed (the memory's PSS beside its summed RSS). */
  readonly second?: {
    readonly value: (p: ScalePoint) => number | undefined;
    readonly name: string;
  };
}

const CHARTS: readonly Chart[] = [
  { title: "small change, wall time", unit: "s", value: (p) => p.wallSeconds },
  {
    title: "deployer CPU per host",
    unit: "ms",
    value: (p) => p.deployerCpuMsPerHost,
    targetOf: {
      value: (p, all) => {
        const loop = all.find((q) => q.tool === "loop" && q.hosts === p.hosts);
        const cpu = loop?.deployerCpuMsPerHost;
        return cpu === undefined ? undefined : cpu + 40;
      },
      name: "target: the loop's + 40 ms",
    },
  },
  {
    title: "deployer peak memory, summed RSS",
    unit: "MB",
    value: (p) => p.deployerRssMb,
    target: 500,
    second: { value: (p) => p.deployerPssMb, name: "PSS" },
  },
  { title: "SSH handshakes per host", unit: "", value: (p) => p.handshakesPerHost },
];

const COLORS = { nixship: "#1f6feb", loop: "#9a6700", "nixship-first": "#8250df" } as const;
const NAMES = {
  nixship: "nixship deploy",
  loop: "sequential loop",
  "nixship-first": "nixship, first deploy",
} as const;
const W = 420;
const H = 260;
const PAD = { left: 56, right: 16, top: 34, bottom: 40 };

/** Writes the charts of `points` to `file` (PNG). */
export async function plotScale(points: readonly ScalePoint[], file: string): Promise<void> {
  const svg = scaleSvg(points);
  await mkdir(dirname(file), { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 2 * W, height: 2 * H } });
    await page.setContent(`<!doctype html><body style="margin:0">${svg}</body>`);
    await page.screenshot({ path: file, clip: { x: 0, y: 0, width: 2 * W, height: 2 * H } });
  } finally {
    await browser.close();
  }
}

/** The four charts as one SVG, two by two. */
export function scaleSvg(points: readonly ScalePoint[]): string {
  const charts = CHARTS.map((chart, i) =>
    chartSvg(chart, points, (i % 2) * W, Math.floor(i / 2) * H),
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${2 * H}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>${charts.join("")}</svg>`;
}

function chartSvg(chart: Chart, points: readonly ScalePoint[], x0: number, y0: number): string {
  const hosts = [...new Set(points.map((p) => p.hosts))].sort((a, b) => a - b);
  const values = points.flatMap((p) => {
    const v = chart.value(p);
    return v === undefined ? [] : [v];
  });
  const targets = points.flatMap((p) => {
    const v = p.tool === "nixship" ? chart.targetOf?.value(p, points) : undefined;
    return v === undefined ? [] : [{ hosts: p.hosts, v }];
  });
  const top = Math.max(chart.target ?? 0, ...targets.map((t) => t.v), ...values, 1e-9) * 1.15;
  // Hosts on a log scale, from a little below the smallest size to the largest.
  const left = Math.log(Math.max(1, Math.min(...hosts, 1e9) / 1.5));
  const right = Math.max(...hosts, 1);
  const px = (h: number) =>
    x0 +
    PAD.left +
    ((Math.log(Math.max(h, 1)) - left) / Math.max(1e-9, Math.log(right) - left)) *
      (W - PAD.left - PAD.right);
  const axisStart = Math.exp(left);
  const py = (v: number) => y0 + H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const parts: string[] = [
    `<text x="${x0 + PAD.left}" y="${y0 + 20}" font-size="13" font-weight="bold">${escapeXml(chart.title)}${chart.unit ? ` (${chart.unit})` : ""}</text>`,
    `<line x1="${px(axisStart)}" y1="${py(0)}" x2="${px(right)}" y2="${py(0)}" stroke="#888"/>`,
    `<line x1="${px(axisStart)}" y1="${py(0)}" x2="${px(axisStart)}" y2="${py(top)}" stroke="#888"/>`,
    `<text x="${px(Math.sqrt(axisStart * right))}" y="${y0 + H - 8}" text-anchor="middle">hosts (log scale)</text>`,
  ];
  for (const h of hosts) {
    parts.push(
      `<text x="${px(h)}" y="${py(0) + 14}" text-anchor="middle">${h}</text>`,
      `<line x1="${px(h)}" y1="${py(0)}" x2="${px(h)}" y2="${py(0) + 4}" stroke="#888"/>`,
    );
  }
  for (const f of [0.25, 0.5, 0.75, 1]) {
    const v = (top / 1.15) * f;
    parts.push(
      `<text x="${px(axisStart) - 6}" y="${py(v) + 4}" text-anchor="end">${tick(v)}</text>`,
      `<line x1="${px(axisStart)}" y1="${py(v)}" x2="${px(right)}" y2="${py(v)}" stroke="#eee"/>`,
    );
  }
  if (chart.target !== undefined) {
    parts.push(
      `<line x1="${px(axisStart)}" y1="${py(chart.target)}" x2="${px(right)}" y2="${py(chart.target)}" stroke="#cf222e" stroke-dasharray="5,4"/>`,
      `<text x="${px(right)}" y="${py(chart.target) - 4}" text-anchor="end" fill="#cf222e">target ${chart.target}</text>`,
    );
  }
  if (targets.length > 0) {
    const line = targets.map((t) => `${px(t.hosts).toFixed(1)},${py(t.v).toFixed(1)}`);
    const last = targets.at(-1) as { hosts: number; v: number };
    parts.push(
      `<polyline fill="none" stroke="#cf222e" stroke-dasharray="5,4" points="${line.join(" ")}"/>`,
      `<text x="${px(last.hosts)}" y="${py(last.v) - 4}" text-anchor="end" fill="#cf222e">${escapeXml(chart.targetOf?.name ?? "target")}</text>`,
    );
  }
  let legendY = y0 + PAD.top + 4;
  for (const tool of ["nixship", "loop", "nixship-first"] as const) {
    const second = points
      .filter((p) => p.tool === tool)
      .flatMap((p) => {
        const v = chart.second?.value(p);
        return v === undefined ? [] : [[px(p.hosts), py(v)] as const];
      });
    if (second.length > 0) {
      const [x, y] = second.at(-1) as readonly [number, number];
      parts.push(
        `<polyline fill="none" stroke="${COLORS[tool]}" stroke-width="1.5" stroke-dasharray="3,3" points="${second.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ")}"/>`,
        `<text x="${(x - 4).toFixed(1)}" y="${(y - 5).toFixed(1)}" text-anchor="end" fill="${COLORS[tool]}">${escapeXml(chart.second?.name ?? "")}</text>`,
      );
    }
    const line = points
      .filter((p) => p.tool === tool)
      .flatMap((p) => {
        const v = chart.value(p);
        return v === undefined ? [] : [[px(p.hosts), py(v)] as const];
      });
    if (line.length === 0) continue;
    parts.push(
      `<polyline fill="none" stroke="${COLORS[tool]}" stroke-width="2" points="${line.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ")}"/>`,
      ...line.map(
        ([x, y]) =>
          `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3" fill="${COLORS[tool]}"/>`,
      ),
      `<text x="${px(axisStart) + 8}" y="${legendY}" fill="${COLORS[tool]}">${NAMES[tool]}</text>`,
    );
    legendY += 14;
  }
  return parts.join("");
}

function tick(v: number): string {
  return v >= 10 ? v.toFixed(0) : v.toFixed(1);
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/'/g, "&#39;");
}
