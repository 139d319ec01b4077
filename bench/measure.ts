// Runs one benchmarked command and measures it: wall time, GNU time's peak RSS, and the peak
// of the summed RSS of its whole process tree (the command and, e.g., its zstd children).
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const GNU_TIME = "/usr/bin/time";
const SAMPLE_MS = 50;

export interface Measurement {
  readonly code: number;
  readonly stdout: string;
  /** The last few kB of stderr, to say why a command failed. */
  readonly stderrTail: string;
  readonly seconds: number;
  /** GNU time's %M: the largest RSS of any one process of the tree; undefined without it. */
  readonly maxRssBytes: number | undefined;
  /** GNU time's %U + %S: CPU time of the command and the children it waited for. */
  readonly cpuSeconds: number | undefined;
  /** The largest sum of the RSS of every process of the tree, sampled every 50 ms. */
  readonly treePeakRssBytes: number;
}

export function hasGnuTime(): boolean {
  return existsSync(GNU_TIME);
}

export async function measure(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<Measurement> {
  const useTime = hasGnuTime();
  const dir = await mkdtemp(join(tmpdir(), "nixship-bench-time-"));
  const timeFile = join(dir, "rusage");
  try {
    const [file, argv] = useTime
      ? [GNU_TIME, ["--format=%M %U %S", `--output=${timeFile}`, command, ...args]]
      : [command, [...args]];
    const started = performance.now();
    const proc = spawn(file, argv, { env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderrTail = "";
    proc.stdout.on("data", (d: Buffer) => out.push(d));
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderrTail = (stderrTail + d).slice(-4000);
    });
    const rootPid = proc.pid;
    let treePeak = 0;
    const sample = (): void => {
      if (rootPid === undefined) return;
      // GNU time itself is not part of what is measured, only what it runs.
      const pids = useTime ? descendants(rootPid) : [rootPid, ...descendants(rootPid)];
      treePeak = Math.max(
        treePeak,
        pids.reduce((sum, pid) => sum + rssBytes(pid), 0),
      );
    };
    const timer = setInterval(sample, SAMPLE_MS);
    const code = await new Promise<number>((resolve, reject) => {
      proc.on("error", reject);
      proc.on("close", (c) => resolve(c ?? -1));
    }).finally(() => clearInterval(timer));
    const seconds = (performance.now() - started) / 1000;
    return {
      code,
      stdout: Buffer.concat(out).toString("utf8"),
      stderrTail,
      seconds,
      ...(useTime ? await readRusage(timeFile) : { maxRssBytes: undefined, cpuSeconds: undefined }),
      treePeakRssBytes: treePeak,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function readRusage(file: string): Promise<Pick<Measurement, "maxRssBytes" | "cpuSeconds">> {
  // A command that fails makes GNU time write "Command exited with non-zero status" first.
  const text = await readFile(file, "utf8").catch(() => "");
  const [kb, user, sys] = (text.trim().split("\n").at(-1) ?? "").split(" ").map(Number);
  const known = (n: number | undefined): n is number => n !== undefined && Number.isFinite(n);
  return {
    maxRssBytes: known(kb) && kb > 0 ? kb * 1024 : undefined,
    cpuSeconds: known(user) && known(sys) ? user + sys : undefined,
  };
}

/** Every live descendant of `pid`, from /proc/PID/task/TID/children of each of its threads. */
function descendants(pid: number): number[] {
  const found: number[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    for (const child of children(next)) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function children(pid: number): number[] {
  return readOr(() => readdirSync(`/proc/${pid}/task`), []).flatMap((tid) =>
    readOr(() => readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8"), "")
      .split(" ")
      .filter((s) => s !== "")
      .map(Number),
  );
}

function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(
    readOr(() => readFileSync(`/proc/${pid}/status`, "utf8"), ""),
  );
  return match ? Number(match[1]) * 1024 : 0;
}

/** Processes and threads come and go while we sample; one that is gone counts as nothing. */
function readOr<T>(read: () => T, gone: T): T {
  try {
    return read();
  } catch {
    return gone;
  }
}
