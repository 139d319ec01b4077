// `nixship release publish`: build the selected agent hosts' systems, push them, and publish
// one signed release of the fleet's channel naming them (`deploy --via agent --async`).
import { deploy } from "../deploy/deploy.js";
import { InputError, OperationError, UsageError } from "../errors.js";
import { requireTrustedSigningKey } from "../fleet/cache-trust.js";
import { createDeployRenderer } from "../ui/deploy-progress.js";
import { type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, readFleetInput, readRollout } from "./fleet-input.js";
import { trapInterrupts } from "./interrupts.js";
import { readReleaseKey, readSecretKeyFile } from "./keys-input.js";

export const releasePublish: Command = {
  path: ["release", "publish"],
  summary: "build and push the selected agent hosts' systems, then publish a signed release",
  help: `Usage: nixship release publish [--fleet FILE] [--on SELECTOR] --key CACHE_SECRET
                              [--release-key SECRET_FILE] [--action A] [--allow-failed]
                              [--no-delta] [--json]

Builds the selected agent hosts' systems (one evaluation), pushes the closures signed into
the fleet's cache, then publishes ONE release of the fleet's channel (releases.channel): it
writes, for more than 256 hosts, the release's shards (release-shards/<channel>/<seq>/),
then releases/<channel>/<seq>.json if that number is free, then beside it
releases/<channel>/<seq>.origin.json (who published it: the CI run or user@machine, and the
flakes with their git commits and whether their trees were dirty, signed by the release key for
this release; agents do not read it), then moves channels/<channel>.json only over the version
it read. Two publishers racing: the first to move the channel wins; the other reads the channel
again and publishes on top of it, keeping what the first named for every host it does not name
itself (three tries; then it fails with exit 1 and code release-conflict, having changed
nothing). Does not wait for the agents: use 'nixship deploy
--via agent' for a watched rollout with canary and waves, and 'nixship status' to see where
the agents are.

The channel is explicit: the release names every selected host's system as the fleet file
states it, whether or not the host already runs it. A host outside the selection keeps its
entry unless that entry names a system that failed on the host; then the release names the
host's last confirmed system, or none when none is known (said on stderr). A selected
host's system that failed on that host is refused (exit 2) unless --allow-failed. A selected
host whose agent is offline or paused is not named (its entry stays as it was) and is listed
as skipped, unreachable.

When the fleet file turns deltas on ("deltas": true, or a tool), the deltas of the paths the
hosts lack against paths they have are published first, and the entry of each host whose
policy allows deltas names the delta tool (docs/deltas.md); an agent older than deltas refuses
such a release, so turn them on once the agents are updated (docs/agent.md, "Deltas").

Options:
${FLEET_HELP}
  --key FILE            secret key that signs the pushed paths
  --release-key FILE    secret key that signs the release (else $NIXSHIP_RELEASE_KEY)
  --action A            switch (default), boot, test or dry-activate
  --allow-failed        name a selected host's system even if it failed on that host
  --no-delta            publish no deltas, and name no delta tool in the entries: the hosts
                        fetch every path whole (fleet policy deltas, else on when the fleet
                        file turns deltas on)

Prints the release's channel, number and digest ({"channel","seq","digest"} with --json).`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...FLEET_FLAGS,
        key: { type: "string" },
        "release-key": { type: "string" },
        action: { type: "string" },
        "allow-failed": { type: "boolean" },
        "no-delta": { type: "boolean" },
      },
      "release publish",
    );
    refuseArguments(positionals, "release publish");
    const input = await readFleetInput(values, io, "release publish");
    const { policy, policyFlags, action } = readRollout(values, input.fleet, "release publish");
    if (values.key === undefined) {
      throw new UsageError("release publish: --key CACHE_SECRET is needed to sign what is pushed");
    }
    const key = await readSecretKeyFile(values.key);
    if (input.fleet.cache !== undefined) {
      requireTrustedSigningKey(key, input.fleet.cache.publicKeys, input.fleetFile);
    }
    const releaseKey = await readReleaseKey(
      values["release-key"],
      io.env,
      input.fleet,
      input.fleetFile,
    );
    if (releaseKey === undefined) {
      throw new UsageError(
        "release publish: --release-key SECRET_FILE is needed to sign the release",
        "or set $NIXSHIP_RELEASE_KEY to the file; its public key is in the fleet's releases.publicKeys",
      );
    }
    const renderer = createDeployRenderer(io.stderr, values.json ? "plain" : "auto");
    // An interrupt (a cancelled CI job) stops the build, the push and the deltas where they
    // are, their scratch files removed; a release is written only once what it names is pushed.
    const trap = trapInterrupts({
      first: () => {
        renderer.finish();
        io.stderr.write(
          "release publish: interrupted; stopping (nothing is released before its push is whole; interrupt again to stop at once)\n",
        );
      },
      second: () => io.stderr.write("release publish: stopped at once\n"),
    });
    let released: { channel: string; seq: number; digest: string } | undefined;
    const report = await deploy({
      ...input,
      selector: values.on,
      action,
      policy,
      policyFlags,
      key,
      serveCache: undefined,
      via: "agent",
      releaseKey,
      async: true,
      // A host whose agent is offline or paused is not named, and said (the channel keeps its
      // entry for it); one that answered something other than a status stops the publish.
      skipUnreachable: true,
      allowFailed: values["allow-failed"] === true,
      signal: trap.signal,
      emit: (e) => {
        if (e.type === "released") {
          released = { channel: e.channel, seq: e.seq, digest: e.digest };
        }
        if (e.type !== "plan") renderer.onEvent(e);
      },
    })
      .catch((err: unknown) => {
        // The delivery's own words name the --via that deploy takes, which this command has not.
        if (err instanceof InputError && err.code === "delivery-mismatch") {
          throw new InputError(
            err.code,
            err.message.replace(
              /^--via agent, but /,
              "release publish releases to agent hosts only, but ",
            ),
            {
              hint: "select the agent hosts with --on, or deploy the others with 'nixship deploy'",
            },
          );
        }
        throw err;
      })
      .finally(() => {
        renderer.finish();
        trap.release();
      });
    for (const note of report.channelNotes) io.stderr.write(`note: ${note}\n`);
    if (released === undefined) {
      const failed = report.results.flatMap((r) =>
        r.outcome.status === "failed" ? [`${r.host}: ${r.outcome.message}`] : [],
      );
      if (failed.length > 0) {
        throw new OperationError(
          "release-not-published",
          `release publish: nothing was published: ${failed.join("; ")}`,
          { hint: "'nixship status --on HOST' shows what the host answers" },
        );
      }
      throw new UsageError("release publish: no agent host is selected: there is nothing to name");
    }
    if (values.json) writeJson(io, released);
    else io.stdout.write(`${released.channel} ${released.seq} ${released.digest}\n`);
    // The channel moved: the release is out, and the agents take it, whatever came after.
    if (trap.signal.aborted) {
      io.stderr.write(
        `note: ${String(trap.signal.reason)} came as release ${released.seq} was published: it is out, and the agents take it\n`,
      );
    }
    return 0;
  },
};
