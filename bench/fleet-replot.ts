// Draws bench:fleet's scale curve from the points of several runs (`--points FILE` of each):
// sizes measured apart (1,000 hosts in one run, 20 to 200 in another) on one picture. A size
// given twice keeps the later file's. `node dist-bench/bench/fleet-replot.js OUT.png A.json B.json`
import { readFile } from "node:fs/promises";
import { plotScale, type ScalePoint } from "./fleet-plot.js";

async function main(): Promise<void> {
  const [out, ...files] = process.argv.slice(2);
  if (out === undefined || !out.endsWith(".png") || files.length === 0) {
    throw new Error("usage: fleet-replot.js OUT.png POINTS.json...");
  }
  const bySize = new Map<string, ScalePoint>();
  for (const file of files) {
    const points = JSON.parse(await readFile(file, "utf8")) as ScalePoint[];
    if (!Array.isArray(points)) throw new Error(`${file}: not a list of scale points`);
    for (const p of points) bySize.set(`${p.tool} ${p.hosts}`, p);
  }
  const points = [...bySize.values()].sort((a, b) => a.hosts - b.hosts);
  await plotScale(points, out);
  console.log(
    `${out}: ${points.length} points, ${[...new Set(points.map((p) => p.hosts))].join(", ")} hosts`,
  );
}

await main();
