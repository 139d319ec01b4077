// A push stopped by two SIGINTs to nixship's own process (a supervisor's, or `kill` twice):
// the second exits at once, and leaves nothing working or half-written behind it: no
// compressor running on (xz, reparented to init, compressed on for a minute), and no staging
// directory in the cache (zstd's NARs waited there 24 hours for another push to remove them).
import { spawn } from "node:child_process";
import { createCipheriv, randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generatedKey, NIXSHIP_BIN, runOk } from "../support/cli.js";

let work: string;
let key: string;
let path: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-push-interrupt-"));
  key = (await generatedKey(work, "push-interrupt-1")).file;
  // Noise does not compress: 48 MiB keeps xz and zstd -19 at work for seconds. The same
  // noise every run (AES-CTR of zeros under a fixed key), so the store holds one such path.
  const blob = join(work, "nixship-push-interrupt-noise");
  const noise = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  await writeFile(blob, noise.update(Buffer.alloc(48 * 1024 * 1024)));
  path = (await runOk("nix-store", ["--add", blob])).trim();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Processes whose environment holds `mark` (the push's children inherit it). */
async function marked(mark: string): Promise<string[]> {
  return (await markedWithState(mark)).map((p) => p.line);
}

/** Each marked process, and its state as /proc/PID/stat says it (R, S, D, Z…). */
async function markedWithState(mark: string): Promise<{ line: string; state: string }[]> {
  const found: { line: string; state: string }[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^[0-9]+$/.test(pid)) continue;
    const env = await readFile(`/proc/${pid}/environ`, "utf8").catch(() => "");
    if (env.split("\0").includes(`NIXSHIP_TEST_MARK=${mark}`)) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "?";
      found.push({ line: `${pid}: ${cmd.replaceAll("\0", " ")}`, state });
    }
  }
  return found;
}

/** Seconds the push may take to exit after its second SIGINT before the test says where it is. */
const EXIT_BOUND_S = 60;

describe.each([
  ["xz", ["--compression", "xz"]],
  ["zstd -19", ["--compression", "zstd", "--level", "19"]],
])("a push (%s) interrupted twice", (_name, flags) => {
  it("exits 130 at once, with no compressor left running and no staging directory left", async () => {
    const cache = join(work, `cache-${randomUUID().slice(0, 8)}`);
    const mark = randomUUID();
    const push = spawn(
      process.execPath,
      [NIXSHIP_BIN, "push", "--to", `file://${cache}`, "--key", key, ...flags, path],
      { env: { ...process.env, NIXSHIP_TEST_MARK: mark }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    push.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    push.stdout.resume();
    const exited = new Promise<number | null>((resolve) => push.on("close", resolve));
    // Until the NAR is being compressed: a compressor runs (xz), or the staging directory
    // holds a file (zstd compresses in this process).
    const deadline = Date.now() + 60_000;
    for (;;) {
      const staged = await readdir(cache, { recursive: true }).catch(() => [] as string[]);
      const busy =
        (await marked(mark)).some((p) => /^[0-9]+: xz /.test(p)) ||
        staged.some((n) => n.includes("nixship-tmp") && n.endsWith(".zst"));
      if (busy) break;
      if (Date.now() > deadline) throw new Error(`the push never began compressing:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const busyAt = Date.now();
    push.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 300));
    push.kill("SIGINT");
    // Bounded, and said: which of its processes still run, and in what state, should it hang.
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<"hung">((r) => {
        timer = setTimeout(() => r("hung"), EXIT_BOUND_S * 1000);
      }),
    ]);
    clearTimeout(timer);
    if (code === "hung") {
      const left = (await markedWithState(mark)).map((p) => `${p.state} ${p.line.slice(0, 200)}`);
      throw new Error(
        `the push had not closed ${EXIT_BOUND_S}s after its second SIGINT (it compressed ${Math.round((busyAt - (deadline - 60_000)) / 1000)}s after its start; exit code ${push.exitCode}, signal ${push.signalCode}); its processes (state, pid, command):\n${left.join("\n")}\nits stderr:\n${stderr}`,
      );
    }
    expect(code, stderr).toBe(130);
    // Its children end with it: a moment for the kernel to reap them.
    const until = Date.now() + 5000;
    while ((await marked(mark)).length > 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await marked(mark)).toEqual([]);
    const left = await readdir(cache, { recursive: true });
    expect(left.filter((n) => n.includes("nixship-tmp"))).toEqual([]);
    // Its bounds: 60 s to begin compressing, EXIT_BOUND_S to exit, 5 s for the children to go.
  }, 180_000);
});
