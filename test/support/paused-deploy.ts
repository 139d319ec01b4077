// A `nixship deploy --json` run that the test acts on while it runs: once it says it is paused
// (policy.pauseAfter), or at any event the test names, the test acts (its commands are other
// processes than the deploy) while the deploy goes on or waits.
import { type CliRun, NIXSHIP_BIN, run } from "../../support/cli.js";
import type { DeployEventLine } from "./lab-deploy.js";

/** Runs `nixship ARGS`; `atPause` runs once, at its first "paused" event. */
export async function deployPausing(
  args: readonly string[],
  atPause: (paused: DeployEventLine) => Promise<void>,
  env: NodeJS.ProcessEnv = {},
): Promise<CliRun & { paused: DeployEventLine }> {
  const r = await deployActing(args, (e) => e.type === "paused", atPause, env);
  return { ...r, paused: r.at };
}

/** Runs `nixship ARGS`; `act` runs once, at the first event `at` picks. */
export async function deployActing(
  args: readonly string[],
  at: (event: DeployEventLine) => boolean,
  act: (event: DeployEventLine) => Promise<void>,
  env: NodeJS.ProcessEnv = {},
): Promise<CliRun & { at: DeployEventLine }> {
  let pending = "";
  let seen: DeployEventLine | undefined;
  let acting: Promise<void> = Promise.resolve();
  const r = await run(process.execPath, [NIXSHIP_BIN, ...args], {
    env,
    onStdout: (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        const event = JSON.parse(line) as DeployEventLine;
        if (seen === undefined && at(event)) {
          seen = event;
          acting = act(event);
        }
      }
    },
  });
  await acting;
  if (seen === undefined) {
    throw new Error(`the deploy never came to the event awaited:\n${r.stdout}\n${r.stderr}`);
  }
  return { ...r, at: seen };
}
