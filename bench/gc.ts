// bench:gc: `nixship cache gc` on synthetic caches in s3rver (the real S3 protocol, through the
// AWS SDK), at several sizes: wall and CPU seconds, peak RSS, the time of each step, and the
// requests by kind, per object, so that their growth shows. No peer can be measured beside
// it: stock Nix has no collection for a binary cache in S3 (NixOS/nix #1968).
//
//   npm run bench:gc [-- --narinfos 5000,10000,20000] [--store s3|file]
//
// --store file: the same caches in a directory, where the store costs little, so that the
// collector's own time shows (s3rver is one Node process, and slow at large batch deletes).
//
// Each cache holds N narinfos in chains of 10 (a path refers to the one before it), half the
// chains pinned (their tops: the collector keeps 50% of the paths), every NAR its own object,
// and N/50 orphan NARs. Everything is older than the grace period of 0.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { writePin } from "../src/cache/pins.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
import { mapLimit } from "../src/util/pool.js";
import { S3RVER_CREDENTIALS, startS3Server } from "../support/s3-server.js";
import { putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";
import { measure } from "./measure.js";
import { mb, table } from "./stats.js";

const CHAIN = 10;
/** The CLI this bench measures: dist/ (npm run build), beside dist-bench/. */
const NIXSHIP_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const FILL_CONCURRENCY = 32;

interface GcJson {
  readonly deleted: Record<string, { objects: number; bytes: number }>;
  readonly kept: Record<string, { objects: number; bytes: number }>;
  readonly requests: { list: number; get: number; delete: number };
  readonly storeRequests?: { requests: Record<string, number>; retries: number };
  readonly seconds: { lock: number; list: number; mark: number; sweep: number };
  readonly rootsSeconds: number;
  readonly peakRssBytes: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { narinfos: { type: "string" }, store: { type: "string" } },
  });
  const kind = values.store ?? "s3";
  if (kind !== "s3" && kind !== "file") throw new Error(`--store is s3 or file, got ${kind}`);
  const sizes = (values.narinfos ?? "5000,10000,20000").split(",").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < CHAIN)) {
    throw new Error(`--narinfos takes sizes of at least ${CHAIN}, got ${values.narinfos}`);
  }
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-gc-"));
  const s3 = await startS3Server("nixship-bench-gc");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    AWS_REGION: "us-east-1",
    AWS_CONFIG_FILE: join(work, "no-aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: join(work, "no-aws-credentials"),
    AWS_EC2_METADATA_DISABLED: "true",
  };
  delete env.AWS_PROFILE;
  const rows: string[][] = [];
  try {
    for (const n of sizes) {
      const url =
        kind === "s3"
          ? `s3://${s3.bucket}/gc-${n}?region=us-east-1&endpoint=${s3.endpoint}`
          : `file://${join(work, `gc-${n}`)}?fsync=false`;
      const filled = performance.now();
      const objects = await fill(url, n);
      process.stderr.write(
        `bench:gc: ${n} narinfos, ${objects} objects put in ${((performance.now() - filled) / 1000).toFixed(1)} s\n`,
      );
      await new Promise((r) => setTimeout(r, 1100)); // s3rver's times have whole seconds
      const m = await measure(
        process.execPath,
        [NIXSHIP_BIN, "cache", "gc", "--cache", url, "--grace", "0", "--json"],
        env,
      );
      if (m.code !== 0) throw new Error(`cache gc failed (${m.code}): ${m.stderrTail}`);
      const r = JSON.parse(m.stdout) as GcJson;
      const sent = r.storeRequests?.requests ?? {};
      const deleted = r.deleted.narinfo.objects + r.deleted.nar.objects;
      rows.push([
        String(n),
        String(objects),
        String(deleted),
        m.seconds.toFixed(2),
        m.cpuSeconds?.toFixed(2) ?? "-",
        (r.seconds.list + r.rootsSeconds).toFixed(2),
        r.seconds.mark.toFixed(2),
        r.seconds.sweep.toFixed(2),
        String(sent.list ?? r.requests.list),
        String(sent.get ?? r.requests.get),
        String(sent.delete ?? r.requests.delete),
        ((sent.get ?? r.requests.get) / n).toFixed(3),
        (((sent.list ?? r.requests.list) * 1000) / objects).toFixed(2),
        mb(m.maxRssBytes ?? r.peakRssBytes),
      ]);
    }
  } finally {
    await s3.close();
    await rm(work, { recursive: true, force: true });
  }
  process.stdout.write(
    `${table([
      [
        "narinfos",
        "objects",
        "deleted",
        "wall s",
        "CPU s",
        "list s",
        "mark s",
        "sweep s",
        "LIST",
        "GET",
        "DELETE",
        "GET/narinfo",
        "LIST/1000 obj",
        "peak RSS",
      ],
      ...rows,
    ])}\n`,
  );
  process.stdout.write(
    "GET/narinfo: the collector reads each narinfo at most once (kept ones to mark, deleted ones to order the deletes).\n" +
      "No peer: stock Nix has no garbage collection of a binary cache in S3 (NixOS/nix #1968).\n",
  );
}

/** Fills the cache at `url` with n narinfos in chains, half pinned, and n/50 orphan NARs. */
async function fill(url: string, n: number): Promise<number> {
  const store = await openStore(url);
  const key = generateSecretKey("bench-gc-1");
  try {
    await store.put(
      "nix-cache-info",
      Buffer.from("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"),
    );
    const chains = Math.floor(n / CHAIN);
    const tops = await mapLimit(
      Array.from({ length: chains }, (_, c) => c),
      FILL_CONCURRENCY,
      async (c) => {
        let previous: StorePath | undefined;
        for (let i = 0; i < CHAIN; i++) {
          const path = syntheticPath(`${n}-${c}-${i}`, `p${c}-${i}`);
          await putSyntheticPath(store, key, path, previous === undefined ? [] : [previous]);
          previous = path;
        }
        return previous as StorePath;
      },
    );
    const pinned = tops.filter((_, c) => c % 2 === 0);
    for (let i = 0; i < pinned.length; i += 10_000) {
      await writePin(store, {
        name: `half-${i}`,
        paths: pinned.slice(i, i + 10_000),
        created: new Date().toISOString(),
      });
    }
    const orphans = Math.floor(n / 50);
    await mapLimit(
      Array.from({ length: orphans }, (_, i) => i),
      FILL_CONCURRENCY,
      (i) => store.put(`nar/${String(i).padStart(52, "0")}.nar`, Buffer.from(`orphan ${i}`)),
    );
    return 1 + chains * CHAIN * 2 + orphans + Math.ceil(pinned.length / 10_000);
  } finally {
    await store.close();
  }
}

await main();
