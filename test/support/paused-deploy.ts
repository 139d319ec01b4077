// A `nixship deploy --json` run that pauses (policy.pauseAfter): once it says it is paused, the
// test acts (its commands are other processes than the deploy) while the deploy waits.
import { type CliRun, NIXSHIP_BIN, run } from "../../support/cli.js";
import type { DeployEventLine } from "./lab-deploy.js";

/** Runs `nixship ARGS`; `atPause` runs once, at its first "paused" event. */
export async function deployPausing(
  args: readonly string[],
  atPause: (paused: DeployEventLine) => Promise<void>,
  env: NodeJS.ProcessEnv = {},
): Promise<CliRun & { paused: DeployEventLine }> {
  let pending = "";
  let paused: DeployEventLine | undefined;
  let acting: Promise<void> = Promise.resolve();
  const r = await run(process.execPath, [NIXSHIP_BIN, ...args], {
    env,
    onStdout: (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        const event = JSON.parse(line) as DeployEventLine;
        if (event.type === "paused" && paused === undefined) {
          paused = event;
          acting = atPause(event);
        }
      }
    },
  });
  await acting;
  if (paused === undefined) throw new Error(`the deploy never paused:\n${r.stdout}\n${r.stderr}`);
  return { ...r, paused };
}
