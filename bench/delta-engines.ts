// Measures one pair of `npm run bench:delta`: the target NAR compressed whole (zstd as nixship
// pushes it, xz as cache.nixos.org serves it) and as a delta against the base (zstd's patch
// mode at a few levels, bsdiff), each delta applied again and checked; bytes, and CPU seconds
// and peak memory of every child process from its rusage (GNU time).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, createReadStream, openSync, readSync, rmSync, writeSync } from "node:fs";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_LEVEL } from "../src/cache/compression.js";
import { FRAME_SIZE } from "../src/cache/nar-check.js";
import { compressorFor } from "../src/cache/zstd.js";
import type { Pair } from "./delta-corpora.js";

/** The process groups of the commands running now (timed's). */
const running = new Set<number>();

/** No one command of the bench runs longer than this; one that does counts as failed. */
const COMMAND_TIMEOUT_MS = 30 * 60_000;

export interface Usage {
  readonly cpuSeconds: number;
  readonly wallSeconds: number;
  readonly peakRssBytes: number;
}

export interface EngineResult {
  readonly engine: string;
  /** Why it did not run (a bound), or undefined. */
  readonly skipped?: string;
  readonly bytes?: number;
  /** The deployer's cost to compute the delta. */
  readonly compute?: Usage;
  /** The host's cost to rebuild the target NAR from the base and the delta. */
  readonly apply?: Usage;
  /** The rebuilt NAR is the target, byte for byte. */
  readonly ok?: boolean;
}

export interface PairResult {
  readonly pair: Pair;
  readonly baseBytes: number;
  readonly narBytes: number;
  /** The NAR as nixship pushes it: zstd frames of FRAME_SIZE at its default level. */
  readonly zstdBytes: number;
  readonly xzBytes: number;
  readonly xzCompute: Usage;
  /** The host's cost to decompress the full zstd NAR, the yardstick for applying a delta. */
  readonly unzstd: Usage;
  /** The host's cost to check its copy of the base (sha256 of its NAR), on top of applying. */
  readonly baseCheck: Usage;
  readonly engines: EngineResult[];
}

export interface EngineOptions {
  readonly zstdLevels: readonly number[];
  /** Level 19 and up only for targets up to this many bytes (its time grows steeply). */
  readonly slowLevelMaxBytes: number;
  /** bsdiff needs about 17 times the base plus the target in memory: only up to this. */
  readonly bsdiffMaxMemory: number;
  /** xz -6 only for targets up to this many bytes (Infinity: every one). */
  readonly xzMaxBytes: number;
}

/** Every figure of one pair; cached in `cacheDir` by the pair's files and the options. */
export async function measurePair(
  pair: Pair,
  workDir: string,
  cacheDir: string,
  options: EngineOptions,
  remeasure: boolean,
): Promise<PairResult & { cached: boolean }> {
  // Without the xz bound where it bounds nothing, so that earlier figures are still found.
  const { xzMaxBytes, ...keyed } = options;
  const key = createHash("sha256")
    .update(
      JSON.stringify([
        pair.baseNar,
        pair.targetNar,
        keyed,
        "v2",
        ...(Number.isFinite(xzMaxBytes) ? [xzMaxBytes] : []),
      ]),
    )
    .digest("hex")
    .slice(0, 24);
  const cacheFile = join(cacheDir, `${key}.json`);
  if (!remeasure) {
    const cached = await readFile(cacheFile, "utf8").catch(() => undefined);
    if (cached !== undefined) return { ...(JSON.parse(cached) as PairResult), pair, cached: true };
  }
  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  // An interrupt ends the command running (a group of its own, which the signal to this
  // process does not reach) and takes the work directory with it.
  const onSignal = () => {
    for (const group of running) {
      try {
        process.kill(-group, "SIGKILL");
      } catch {
        // It ended already.
      }
    }
    rmSync(workDir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const result = await measureFresh(pair, workDir, options);
    await mkdir(cacheDir, { recursive: true });
    await writeFile(cacheFile, `${JSON.stringify(result)}\n`);
    return { ...result, cached: false };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await rm(workDir, { recursive: true, force: true });
  }
}

async function measureFresh(pair: Pair, work: string, options: EngineOptions): Promise<PairResult> {
  const { baseNar, targetNar } = pair;
  const baseBytes = (await stat(baseNar)).size;
  const narBytes = (await stat(targetNar)).size;
  const targetHash = await sha256File(targetNar);

  const zst = join(work, "target.nar.zst");
  const zstdBytes = writePushedZstd(targetNar, zst);
  const unzstd = await timed("zstd", ["-q", "-d", "-f", "-c", zst], "/dev/null");
  const xz = join(work, "target.nar.xz");
  // Not measured (NaN, printed "-") for a target over the bound: xz -6 is most of a pair's CPU.
  const xzCompute =
    narBytes > options.xzMaxBytes
      ? { wallSeconds: Number.NaN, cpuSeconds: Number.NaN, peakRssBytes: Number.NaN }
      : await timed("xz", ["-q", "-c", `-${DEFAULT_LEVEL.xz}`, "-T1", targetNar], xz);
  const xzBytes = narBytes > options.xzMaxBytes ? Number.NaN : (await stat(xz)).size;
  const baseCheck = await timed("sha256sum", [baseNar], "/dev/null");
  await rm(xz, { force: true });
  await rm(zst);

  const engines: EngineResult[] = [];
  const out = join(work, "rebuilt.nar");
  const check = async (): Promise<boolean> => {
    const ok = (await sha256File(out)) === targetHash;
    await rm(out, { force: true });
    return ok;
  };
  for (const level of options.zstdLevels) {
    const engine = `zstd-patch -${level}`;
    if (level >= 19 && narBytes > options.slowLevelMaxBytes) {
      engines.push({ engine, skipped: `target over ${mb(options.slowLevelMaxBytes)}` });
      continue;
    }
    const delta = join(work, `delta-${level}.zst`);
    const patchFrom = [`--patch-from=${baseNar}`, "--long=31"];
    engines.push(
      await attempt(engine, async () => {
        const args = ["-q", "-f", `-${level}`, ...patchFrom, "-o", delta, targetNar];
        const compute = await timed("zstd", args);
        const apply = await timed("zstd", ["-q", "-d", "-f", ...patchFrom, "-o", out, delta]);
        return { engine, bytes: (await stat(delta)).size, compute, apply, ok: await check() };
      }),
    );
    await rm(delta, { force: true });
  }
  const bsdiffMemory = 17 * baseBytes + narBytes;
  if (bsdiffMemory > options.bsdiffMaxMemory) {
    engines.push({
      engine: "bsdiff",
      skipped: `needs ~${mb(bsdiffMemory)} of memory, over ${mb(options.bsdiffMaxMemory)}`,
    });
  } else {
    const patch = join(work, "delta.bsdiff");
    engines.push(
      await attempt("bsdiff", async () => {
        const compute = await timed("bsdiff", [baseNar, targetNar, patch]);
        const apply = await timed("bspatch", [baseNar, out, patch]);
        return {
          engine: "bsdiff",
          bytes: (await stat(patch)).size,
          compute,
          apply,
          ok: await check(),
        };
      }),
    );
    await rm(patch, { force: true });
  }
  return { pair, baseBytes, narBytes, zstdBytes, xzBytes, xzCompute, unzstd, baseCheck, engines };
}

/** An engine that fails or runs past its deadline is reported as skipped, with why. */
async function attempt(engine: string, run: () => Promise<EngineResult>): Promise<EngineResult> {
  try {
    return await run();
  } catch (err) {
    return {
      engine,
      skipped: `failed: ${(err instanceof Error ? err.message : String(err)).slice(0, 160)}`,
    };
  }
}

/** The NAR compressed as `nixship push` writes it (nar-pool.ts): one zstd frame per chunk. */
function writePushedZstd(nar: string, file: string): number {
  const compressor = compressorFor(DEFAULT_LEVEL.zstd);
  const input = openSync(nar, "r");
  const output = openSync(file, "w");
  const chunk = Buffer.allocUnsafe(FRAME_SIZE);
  let bytes = 0;
  try {
    for (;;) {
      let filled = 0;
      while (filled < FRAME_SIZE) {
        const n = readInto(input, chunk, filled);
        if (n === 0) break;
        filled += n;
      }
      if (filled === 0) break;
      const frame = compressor.compress(chunk.subarray(0, filled));
      writeSync(output, frame);
      bytes += frame.length;
      if (filled < FRAME_SIZE) break;
    }
  } finally {
    closeSync(input);
    closeSync(output);
  }
  return bytes;
}

function readInto(fd: number, buffer: Buffer, offset: number): number {
  return readSync(fd, buffer, offset, buffer.length - offset, null);
}

// Runs the command as a child of a small Python parent that reports the child's rusage from
// wait4(2): CPU time in microseconds (the kernel's precise runtime, where GNU time prints
// hundredths, which reads 0 for the small pairs), and peak RSS.
export const RUSAGE_WRAPPER = `
import os, sys, time
started = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write("%f %f %f %d\\n" % (time.monotonic() - started, ru.ru_utime, ru.ru_stime, ru.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
`;

/** RUSAGE_WRAPPER's line: wall seconds, user and system CPU seconds, peak RSS in KiB. */
export function parseRusage(text: string): Usage {
  const fields = text.trim().split(" ").map(Number);
  if (fields.length !== 4 || fields.some((f) => !Number.isFinite(f)))
    throw new Error(`not a rusage line (wall user sys maxrss): '${text.trim().slice(0, 200)}'`);
  const [wall, user, sys, kb] = fields as [number, number, number, number];
  return { wallSeconds: wall, cpuSeconds: user + sys, peakRssBytes: kb * 1024 };
}

/** Runs `command` (stdout to `stdoutFile`, or discarded) and measures it; fails on non-zero. */
async function timed(
  command: string,
  args: readonly string[],
  stdoutFile?: string,
): Promise<Usage> {
  const rusage = join(tmpdir(), `nixship-bench-delta-rusage-${process.pid}`);
  const fd = stdoutFile === undefined ? "ignore" : openSync(stdoutFile, "w");
  try {
    await new Promise<void>((resolve, reject) => {
      const proc = spawn("python3", ["-c", RUSAGE_WRAPPER, rusage, command, ...args], {
        stdio: ["ignore", fd, "pipe"],
        // A group of its own, so that a deadline ends the command and not only its parent.
        detached: true,
      });
      const group = proc.pid;
      if (group !== undefined) running.add(group);
      let tail = "";
      proc.stderr?.setEncoding("utf8").on("data", (d: string) => {
        tail = (tail + d).slice(-2000);
      });
      const timer = setTimeout(() => {
        if (proc.pid !== undefined) process.kill(-proc.pid, "SIGKILL");
      }, COMMAND_TIMEOUT_MS);
      proc.on("error", reject);
      proc.on("close", (code) => {
        clearTimeout(timer);
        if (group !== undefined) running.delete(group);
        if (code === 0) resolve();
        else reject(new Error(`'${command} ${args.join(" ")}' exited ${code}: ${tail.trim()}`));
      });
    });
    return parseRusage(await readFile(rusage, "utf8"));
  } finally {
    if (typeof fd === "number") closeSync(fd);
    await rm(rusage, { force: true });
  }
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

export function mb(bytes: number): string {
  if (Number.isNaN(bytes)) return "-";
  return `${(bytes / 1e6).toFixed(bytes < 1e6 ? 3 : 1)} MB`;
}
