// `nixship build`: the selected hosts' systems, one evaluation and one build for all.

import { buildSystems } from "../deploy/build.js";
import { resolveBuildPlace } from "../deploy/build-place.js";
import { type BuildProgressReporter, reportBuildProgress } from "../deploy/build-progress.js";
import { selectHosts } from "../fleet/select.js";
import { createDeployRenderer, type DeployOutput } from "../ui/deploy-progress.js";
import { type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, readFleetInput } from "./fleet-input.js";
import { whileTrapped } from "./interrupts.js";

export const buildCommand: Command = {
  path: ["build"],
  summary: "build the selected hosts' systems: one evaluation and one build for all",
  help: `Usage: nixship build [--fleet FILE] [--on SELECTOR] [--build-host [USER@]HOST] [--json]

Evaluates the systems of the selected hosts in one Nix evaluation and builds them in one
'nix build'; hosts with the same system share the result. Prints each system's store path
and the hosts that run it. Builds run here and on the fleet's build.builders, or in the
build host's store (--build-host, or build.host), copied back here. What builds, for how
long, and how many derivations of how many are built are said on stderr as it changes and
every 15 s while a build runs, as deploy says it: one line redrawn in place on a terminal, a
line each time otherwise (and with --json); a failed build's last log lines are in its error.

Options:
${FLEET_HELP}
  --build-host HOST  build in HOST's store over ssh-ng:// ([USER@]HOST or a fleet host's name)`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLEET_FLAGS, "build-host": { type: "string" } },
      "build",
    );
    refuseArguments(positionals, "build");
    const { fleet, fleetDir } = await readFleetInput(values, io, "build");
    const where = await resolveBuildPlace(fleet, values["build-host"]);
    const progress = showBuildProgress(io.stderr, values.json === true);
    // An interrupt stops Nix too (a SIGTERM reaches nixship alone): exit 130, no build left.
    const built = await whileTrapped("build", (signal) =>
      buildSystems(selectHosts(fleet, values.on), fleetDir, {
        where,
        onProgress: progress.onProgress,
        signal,
      }),
    ).finally(progress.stop);
    if (values.json) {
      writeJson(io, {
        systems: built.systems,
        hosts: Object.fromEntries(built.byHost),
        ...(built.builtOn.length === 0 ? {} : { builtOn: built.builtOn }),
        ...(built.host === undefined ? {} : { buildHost: built.host }),
      });
      return 0;
    }
    for (const s of built.systems) io.stdout.write(`${s.path}\t${s.hosts.join(",")}\n`);
    return 0;
  },
};

/**
 * What builds, on `out`, as deploy shows it (its renderer): one line redrawn in place on a
 * terminal, a line each time on a pipe (and with --json, as plan does); when it changes, and
 * every 15 s while a build runs. `stop` once the build ended, however.
 */
export function showBuildProgress(out: DeployOutput, json: boolean): BuildProgressReporter {
  const renderer = createDeployRenderer(out, json ? "plain" : "auto");
  const progress = reportBuildProgress(renderer.onEvent);
  return {
    onProgress: progress.onProgress,
    stop: () => {
      progress.stop();
      renderer.finish();
    },
  };
}
