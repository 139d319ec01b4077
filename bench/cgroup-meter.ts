// CPU time and peak memory of a group of processes and everything they start, from a control
// group of the bench's own (cgroup v1 cpuacct + memory, or v2): what one side of a benchmark
// costs apart from the other (the deployer apart from the lab's hosts), whatever the rest of
// the machine does. Linux and root only; bench/ uses it, tests never do.
import { existsSync } from "node:fs";
import { appendFile, mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

const V1 = { cpu: "/sys/fs/cgroup/cpuacct", memory: "/sys/fs/cgroup/memory" };
const V2 = "/sys/fs/cgroup";

export interface GroupUsage {
  /** CPU seconds (user and system) of every process that was in the group. */
  readonly cpuSeconds: number;
  /** The most memory the group held at once (RSS and page cache charged to it), in bytes. */
  readonly peakBytes: number;
}

export interface RssPeak {
  /** The largest sum of the group's processes' resident sets seen by a sample, in bytes. */
  readonly sumBytes: number;
  /**
   * The largest sum of their proportional sets (PSS: a page shared by N processes counts 1/N
   * to each), in bytes: what the group holds, shared libraries counted once.
   */
  readonly pssBytes: number;
  /** The largest resident set one process of the group reached (its VmHWM), in bytes. */
  readonly largestBytes: number;
  /** How many processes the group held at most, in a sample. */
  readonly processes: number;
  /** At the peak sample: resident bytes and processes by command name (node, ssh, ...). */
  readonly byCommand: Readonly<Record<string, { readonly bytes: number; readonly count: number }>>;
}

/** Whether this machine lets the bench make control groups (root, cgroup v1 or v2). */
export function cgroupsAvailable(): boolean {
  return (
    (existsSync(join(V1.cpu, "cpuacct.usage")) && existsSync(join(V1.memory, "memory.stat"))) ||
    existsSync(join(V2, "cgroup.controllers"))
  );
}

export class CgroupMeter {
  private constructor(
    private readonly dirs: readonly string[],
    private readonly v2: boolean,
  ) {}

  /** Makes the group `name` (one directory per hierarchy); an old one of that name is reused. */
  static async create(name: string): Promise<CgroupMeter> {
    if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`not a cgroup name: ${name}`);
    const v2 = !existsSync(join(V1.cpu, "cpuacct.usage"));
    const dirs = v2 ? [join(V2, name)] : [join(V1.cpu, name), join(V1.memory, name)];
    for (const dir of dirs) await mkdir(dir, { recursive: true });
    return new CgroupMeter(dirs, v2);
  }

  /** The files a process writes its pid to, to join the group (shell: `echo $$ >> FILE`). */
  get procsFiles(): readonly string[] {
    return this.dirs.map((d) => join(d, "cgroup.procs"));
  }

  /** Moves processes (already running) into the group; one that is gone is skipped. */
  async add(pids: readonly number[]): Promise<void> {
    for (const file of this.procsFiles) {
      for (const pid of pids) await appendFile(file, `${pid}\n`).catch(() => undefined);
    }
  }

  /** Starts counting anew: CPU from now, the memory peak from what the group holds now. */
  async reset(): Promise<GroupUsage> {
    const base = await this.read();
    if (!this.v2) {
      await writeFile(join(this.dirs[1] as string, "memory.max_usage_in_bytes"), "0");
    }
    this.base = base.cpuSeconds;
    return base;
  }

  private base = 0;

  /** What the group used since the last reset. */
  async usage(): Promise<GroupUsage> {
    const now = await this.read();
    return { cpuSeconds: now.cpuSeconds - this.base, peakBytes: now.peakBytes };
  }

  private async read(): Promise<GroupUsage> {
    if (this.v2) {
      const dir = this.dirs[0] as string;
      const stat = await readFile(join(dir, "cpu.stat"), "utf8");
      const usec = Number(/^usage_usec (\d+)$/m.exec(stat)?.[1] ?? 0);
      const peak = await readFile(join(dir, "memory.peak"), "utf8").catch(() => "0");
      return { cpuSeconds: usec / 1e6, peakBytes: Number(peak.trim()) };
    }
    const [cpu, memory] = this.dirs as [string, string];
    const ns = Number((await readFile(join(cpu, "cpuacct.usage"), "utf8")).trim());
    const peak = Number((await readFile(join(memory, "memory.max_usage_in_bytes"), "utf8")).trim());
    return { cpuSeconds: ns / 1e9, peakBytes: peak };
  }

  /**
   * Samples the group's processes every `everyMs` until the returned function is called, which
   * gives the peaks seen. A sum of resident sets counts shared pages once per process (an upper
   * bound); the sum of proportional sets counts them once in all.
   */
  sampleRss(everyMs = 100): () => Promise<RssPeak> {
    let peak: RssPeak = { sumBytes: 0, pssBytes: 0, largestBytes: 0, processes: 0, byCommand: {} };
    let running: Promise<void> = Promise.resolve();
    const sample = async () => {
      const pids = (await readFile(this.procsFiles[0] as string, "utf8").catch(() => ""))
        .split("\n")
        .filter(Boolean);
      let sum = 0;
      let pss = 0;
      let largest = peak.largestBytes;
      const byCommand: Record<string, { bytes: number; count: number }> = {};
      for (const pid of pids) {
        const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
        const rss = kib(status, "VmRSS") * 1024;
        sum += rss;
        const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8").catch(() => "");
        pss += kib(rollup, "Pss") * 1024;
        largest = Math.max(largest, kib(status, "VmHWM") * 1024);
        const name = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? "?";
        const entry = byCommand[name] ?? { bytes: 0, count: 0 };
        byCommand[name] = { bytes: entry.bytes + rss, count: entry.count + 1 };
      }
      const higher = sum > peak.sumBytes;
      peak = {
        sumBytes: Math.max(peak.sumBytes, sum),
        pssBytes: Math.max(peak.pssBytes, pss),
        largestBytes: largest,
        processes: Math.max(peak.processes, pids.length),
        byCommand: higher ? byCommand : peak.byCommand,
      };
    };
    const timer = setInterval(() => {
      running = running.then(sample);
    }, everyMs);
    return async () => {
      clearInterval(timer);
      await running;
      return peak;
    };
  }

  /** Moves what is left in the group back to the root group, then removes it. */
  async remove(): Promise<void> {
    for (const dir of this.dirs) {
      const parent = join(dir, "..", "cgroup.procs");
      const left = await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => "");
      for (const pid of left.split("\n").filter(Boolean)) {
        await appendFile(parent, `${pid}\n`).catch(() => undefined);
      }
      await rmdir(dir).catch(() => undefined);
    }
  }
}

/** A `NAME:   123 kB` line of /proc/PID/status, in KiB (0 when absent). */
function kib(status: string, name: string): number {
  return Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status)?.[1] ?? 0);
}
