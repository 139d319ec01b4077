// A `nixship deploy --json` run interrupted on cue: for the tests of what an interrupt does.
import { type ChildProcess, spawn } from "node:child_process";
import { type CliRun, NIXSHIP_BIN } from "../../support/cli.js";

export type DeployEvent = { readonly type: string; readonly [key: string]: unknown };

/**
 * Starts `nixship ARGS` (a deploy with --json), sends `signal` once one of its events matches
 * `when`, and waits for it to end. SIGKILL goes to the deploy's whole process group, its ssh
 * children too, as a CI job's timeout ends it. Every wait has a deadline; a deploy still
 * running at the last one is killed.
 */
export async function interruptDeploy(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  when: (event: DeployEvent) => boolean,
  signal: NodeJS.Signals = "SIGINT",
  /** Sends the signal a second time, this many ms after the first. */
  again?: number,
): Promise<CliRun & { signalledAt: DeployEvent }> {
  const child: ChildProcess = spawn(process.execPath, [NIXSHIP_BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // A group of its own: a SIGKILL reaches its children too.
    detached: true,
  });
  const send = (s: NodeJS.Signals) => {
    if (s === "SIGKILL" && child.pid !== undefined) process.kill(-child.pid, s);
    else child.kill(s);
  };
  let stdout = "";
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const exited = new Promise<number>((resolve) =>
    child.on("close", (code, sig) => resolve(code ?? (sig ? 128 : -1))),
  );
  const signalledAt = await new Promise<DeployEvent>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no matching event within 180s:\n${stdout}\n${stderr}`));
    }, 180_000);
    let pending = "";
    let sent = false;
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      pending += d;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        const event = JSON.parse(line) as DeployEvent;
        // Once (unless `again`): a second signal makes deploy exit at once.
        if (!sent && when(event)) {
          sent = true;
          clearTimeout(timer);
          send(signal);
          if (again !== undefined) setTimeout(() => send(signal), again);
          resolve(event);
        }
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`deploy ended before the event:\n${stdout}\n${stderr}`));
    });
  });
  // The abort grace (120 s) bounds the deploy's wait for the hosts in flight.
  const deadline = setTimeout(() => child.kill("SIGKILL"), 200_000);
  const code = await exited;
  clearTimeout(deadline);
  return { code, stdout, stderr, signalledAt };
}
