// bench:cache-stats: `nixship cache stats` of synthetic directory caches at several sizes: wall
// and CPU seconds and peak RSS, and the same per 1,000 narinfos, so that growth shows. Each
// narinfo is one path of a realistic shape (a signature, a deriver, up to 8 references to
// paths before it) with its NAR (one byte: stats reads only listings and narinfos). No peer can
// be measured beside it: stock Nix has no statistics of a binary cache.
//
//   npm run bench:cache-stats [-- --narinfos 50000,100000,200000]
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { narKey } from "../src/cache/layout.js";
import { Sha256 } from "../src/nix/hash.js";
import { formatNarInfo } from "../src/nix/narinfo.js";
import { makeStorePath, type StorePath } from "../src/nix/store-path.js";
import { mapLimit } from "../src/util/pool.js";
import { measure } from "./measure.js";
import { mb, table } from "./stats.js";

/** The CLI this bench measures: dist/ (npm run build), beside dist-bench/. */
const NIXSHIP_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const REFERENCES = 8;
const WRITE_CONCURRENCY = 64;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { narinfos: { type: "string" } } });
  const sizes = (values.narinfos ?? "50000,100000,200000").split(",").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`--narinfos takes positive sizes, got ${values.narinfos}`);
  }
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-cache-stats-"));
  const rows: string[][] = [];
  try {
    for (const n of sizes) {
      const dir = join(work, `cache-${n}`);
      const filled = performance.now();
      await fill(dir, n);
      process.stderr.write(
        `bench:cache-stats: ${n} narinfos written in ${((performance.now() - filled) / 1000).toFixed(1)} s\n`,
      );
      const m = await measure(
        process.execPath,
        [NIXSHIP_BIN, "cache", "stats", "--cache", `file://${dir}`, "--json"],
        process.env,
      );
      if (m.code !== 0) throw new Error(`cache stats failed (${m.code}): ${m.stderrTail}`);
      const paths = (JSON.parse(m.stdout) as { paths: number }).paths;
      if (paths !== n) throw new Error(`cache stats counted ${paths} paths of ${n}`);
      const rss = m.maxRssBytes ?? m.treePeakRssBytes;
      rows.push([
        String(n),
        m.seconds.toFixed(1),
        m.cpuSeconds?.toFixed(1) ?? "-",
        mb(rss),
        (((m.cpuSeconds ?? Number.NaN) * 1000 * 1000) / n).toFixed(0),
        mb((rss * 1000) / n),
      ]);
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  process.stdout.write(
    `${table([["narinfos", "wall s", "CPU s", "peak RSS", "CPU ms/1000", "RSS/1000"], ...rows])}\n`,
  );
  process.stdout.write(
    `load at the end: ${(await import("node:os")).loadavg()[0]?.toFixed(2)}. No peer: stock Nix has no statistics of a binary cache.\n`,
  );
}

/** A directory cache of n narinfos, each referring to up to REFERENCES paths before it. */
async function fill(dir: string, n: number): Promise<void> {
  await mkdir(join(dir, "nar"), { recursive: true });
  await writeFile(join(dir, "nix-cache-info"), "StoreDir: /nix/store\nPriority: 40\n");
  const paths: StorePath[] = Array.from({ length: n }, (_, i) =>
    makeStorePath("output:out", Sha256.of(`path ${i}`), `package-number-${i}-1.0`),
  );
  await mapLimit(
    Array.from({ length: n }, (_, i) => i),
    WRITE_CONCURRENCY,
    async (i) => {
      const path = paths[i] as StorePath;
      const file = Sha256.of(`nar ${i}`);
      const references: StorePath[] = [];
      for (let k = 1; k <= REFERENCES && i - k * 7 >= 0; k++) {
        references.push(paths[i - k * 7] as StorePath);
      }
      const info = {
        storePath: path,
        url: narKey(file, "zstd"),
        compression: "zstd" as const,
        fileHash: file,
        fileSize: 1,
        narHash: Sha256.of(`nar content ${i}`),
        narSize: 4096 + i,
        references,
        deriver: `${path.slice(11, 43)}-package-number-${i}-1.0.drv`,
        sigs: [`cache.example.org-1:${"A".repeat(86)}==`],
        ca: undefined,
      };
      await writeFile(join(dir, `${path.slice(11, 43)}.narinfo`), formatNarInfo(info));
      await writeFile(join(dir, info.url), "x");
    },
  );
}

await main();
