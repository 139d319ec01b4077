// What one deploy costs a host in processes: the survey's status, the activation with its
// confirmation window and the confirmation over a new connection, on a real lab host, counted
// by strace following the host's sshd. The status checks the asked paths without Nix, the
// profile's new generation is made without Nix (the realise is the deploy's one Nix run), and
// the script's small reads take no process.
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  activateArgs,
  answerOf,
  CHECK_PATHS_VARIABLE,
  confirmArgs,
  parseActivationResult,
  scriptInput,
  statusArgs,
} from "../src/host/activation.js";
import { shellQuote } from "../src/util/shell-quote.js";
import { nixship, run } from "../support/cli.js";
import { type RunningServer, serveLabCache } from "../support/serve.js";
import { buildExampleSystems, type ExampleSystem } from "./support/example-systems.js";

const LAB = "apc";
/**
 * Processes the three runs may start on the host, all told (sshd's, the shells', the example
 * system's switch and service included), a poll's `sleep` aside: 60 now; 68 before the status
 * checked the asked paths' form by the shell instead of grep, and read its values (the failed
 * mark, the boot's assessment) without sed or head, the activation recorded its lock once where
 * it did twice and its health phase with its first check, found its profile on the system by
 * the shell's cd instead of readlink, and the watcher took the time from it instead of date;
 * 71 before the status checked the asked paths by their names on disk instead of `timeout xargs
 * nix-store`; 75 to 78 before it kept its ten newest generations and checked the asked paths
 * with fewer helpers, and the watcher removed the failed mark only when there is one; over 100
 * before the script read its values by the shell.
 */
const PROCESS_BUDGET = 62;
/**
 * Forks of the three runs on the host (every process started, and every subshell: a command
 * substitution, a pipeline's part), a poll's `sleep` aside: 100-101 now; 131-133 before the
 * time, the time left and whole numbers were set by the shell (now_set, remaining_set,
 * decimal_set) and the answers written in pieces, where each took a subshell; 165 before the
 * status set its values by the shell (resolve_set, json_opt_set).
 */
const FORK_BUDGET = 104;

let work: string;
let labsDir: string;
let sshConfig: string;
let host: string;
let sshdPid: number;
let systems: Record<ExampleSystem, string>;
let server: RunningServer;
let publicKey: string;

async function onHost(
  args: readonly string[],
  fresh = false,
  variables: Record<string, string> = {},
) {
  const quoted = args.map(shellQuote).join(" ");
  const r = await run(
    "ssh",
    ["-F", sshConfig, ...(fresh ? ["-o", "ControlPath=none"] : []), host, `sh -s -- ${quoted}`],
    { input: Buffer.from(scriptInput(variables)) },
  );
  if (!r.stdout.trim()) throw new Error(`no answer: ${r.stderr.slice(-2000)}`);
  return { code: r.code, result: parseActivationResult(r.stdout, host), stderr: r.stderr };
}

function activate(system: ExampleSystem, token: string) {
  // A new connection, as every run here: strace follows the sshd processes started after it.
  return onHost(
    activateArgs({
      path: systems[system],
      action: "switch",
      substituters: [server.url],
      trustedKeys: [publicKey],
      confirmTimeout: 60,
      token,
    }),
    true,
  );
}

/**
 * Runs `during` while strace follows the host's sshd (every session and what it starts, the
 * watcher left behind too), and returns the programs started successfully, one per exec.
 */
async function execsDuring(
  during: () => Promise<void>,
): Promise<{ programs: string[]; forks: number }> {
  const dir = await mkdtemp(join(work, "strace-"));
  const tracer = spawn(
    "strace",
    [
      "-ff",
      "-qq",
      "-z",
      "-e",
      "trace=execve,fork,vfork,clone,clone3",
      "-e",
      "signal=none",
      "-o",
      join(dir, "t"),
    ].concat(["-p", String(sshdPid)]),
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let said = "";
  tracer.stderr.on("data", (chunk: Buffer) => {
    said = `${said}${chunk}`.slice(-4000);
  });
  const exited = new Promise<void>((resolve) => tracer.once("exit", () => resolve()));
  const stop = async () => {
    tracer.kill("SIGINT");
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  };
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const status = await readFile(`/proc/${sshdPid}/status`, "utf8");
      if (new RegExp(`^TracerPid:\\s+${tracer.pid}$`, "m").test(status)) break;
      if (Date.now() > deadline || tracer.exitCode !== null) {
        throw new Error(`strace did not attach to the host's sshd (${sshdPid}): ${said}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await during();
    // The watcher writes its outcome, then ends: a moment for its last processes.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await stop();
    const programs: string[] = [];
    let forks = 0;
    for (const file of await readdir(dir)) {
      const text = await readFile(join(dir, file), "utf8");
      for (const m of text.matchAll(/^execve\("([^"]+)"/gm)) programs.push(basename(m[1] ?? ""));
      forks += [...text.matchAll(/^(?:v?fork|clone3?)\(/gm)].length;
    }
    return { programs, forks };
  } finally {
    await stop();
    await rm(dir, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-apc-"));
  labsDir = join(work, "labs");
  systems = await buildExampleSystems();
  const up = await nixship(["lab", "up", "1", "--name", LAB, "--json"], {
    env: { NIXSHIP_LAB_DIR: labsDir },
  });
  expect(up.code, up.stderr).toBe(0);
  const lab = JSON.parse(up.stdout) as {
    number: number;
    hosts: { name: string; pid: number }[];
    files: { sshConfig: string };
  };
  sshConfig = lab.files.sshConfig;
  host = lab.hosts[0]?.name as string;
  sshdPid = lab.hosts[0]?.pid as number;
  ({ server, publicKey } = await serveLabCache(
    work,
    Object.values(systems),
    `10.231.${lab.number}.1`,
  ));
  // A first system, confirmed: the deploy counted below has a generation to go back to.
  const first = await activate("web-v1", "apcfirst");
  expect(first.code, first.stderr).toBe(0);
  const kept = await onHost(confirmArgs("apcfirst"), true);
  expect(kept.code, kept.stderr).toBe(0);
});

afterAll(async () => {
  await server?.stop();
  await nixship(["lab", "down", "--name", LAB], { env: { NIXSHIP_LAB_DIR: labsDir } });
  await rm(work, { recursive: true, force: true });
});

describe("a deploy's processes on a lab host", () => {
  it("status, activate and confirm run Nix once, never nix-env, within the budgets", async () => {
    const { programs, forks } = await execsDuring(async () => {
      const status = await onHost(statusArgs(true), true, {
        [CHECK_PATHS_VARIABLE]: systems["web-v2"],
      });
      expect(answerOf(status.result, "status")?.missing, status.stderr).toHaveLength(1);
      const activated = await activate("web-v2", "apcsecond");
      expect(activated.code, activated.stderr).toBe(0);
      const confirmed = await onHost(confirmArgs("apcsecond"), true);
      expect(confirmed.code, confirmed.stderr).toBe(0);
    });
    const count = (name: string) => programs.filter((p) => p === name).length;
    // The status looks at the asked paths by the shell; the activation realises once, and makes
    // the profile's generation by a link (no `nix-store --add-root`, no
    // `nix-env --switch-generation`).
    expect({ nixStore: count("nix-store"), nixEnv: count("nix-env") }).toEqual({
      nixStore: 1,
      nixEnv: 0,
    });
    // A `sleep` is a poll's wait, more of them the slower the machine: not counted.
    const counted = programs.filter((p) => p !== "sleep");
    expect(counted.length, programs.join(" ")).toBeLessThanOrEqual(PROCESS_BUDGET);
    const sleeps = programs.length - counted.length;
    expect(forks - sleeps, `${forks} forks, ${sleeps} of them sleeps`).toBeLessThanOrEqual(
      FORK_BUDGET,
    );
    const generation = await onHost(statusArgs());
    expect(answerOf(generation.result, "status")?.generation).toBe(2);
  });
});
