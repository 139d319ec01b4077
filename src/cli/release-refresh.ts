// `nixship release refresh`: the channel's current release signed again with a new expiry, so
// agents keep following a channel that has not changed (run it on a schedule, e.g. daily in CI).
import { openDelivery } from "../deploy/open-delivery.js";
import { UsageError } from "../errors.js";
import { RELEASE_DEFAULTS } from "../fleet/fleet.js";
import { type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { FLEET_FILE_FLAGS, FLEET_FILE_HELP, readFleetInput } from "./fleet-input.js";
import { readReleaseKey } from "./keys-input.js";

export const releaseRefresh: Command = {
  path: ["release", "refresh"],
  summary: "sign the channel's current release again with a new expiry (run it on a schedule)",
  help: `Usage: nixship release refresh [--fleet FILE] [--release-key SECRET_FILE] [--json]

Every release carries a signed expiry (expires): its creation time plus the fleet's
releases.maxAge (default ${RELEASE_DEFAULTS.maxAge} s, a week). Agents refuse an expired
release, so someone who can write the bucket but holds no release key cannot keep hosts on
an old release by replaying it. A channel that does not change still needs a fresh release
before the last one expires: this command publishes one, of kind refresh, with the current
release's action, health checks and entries (an entry naming a system that failed on its
host becomes that host's last confirmed system, as in every release) and a new expiry.
Agents already run their entries, so they only report. Run it from a schedule well inside
maxAge, e.g. daily.

The current release must verify against the fleet's releases.publicKeys; a channel that
does not (planted) is passed over for the newest release that does. An older release copied
over the channel (a replay) is never signed again: a newer signed release on file is built on
when it was the channel's (a release was built on it, or a host reported on it), and the
refresh is refused (exit 2, release-channel-ambiguous, nothing written) when that cannot be
told once a publisher that may be at work has had 3 s to move the channel: the error names
the file to delete or to copy back.

Options:
${FLEET_FILE_HELP}
  --release-key FILE    secret key that signs the release (else $NIXSHIP_RELEASE_KEY)

Prints the channel, the new release's number, its digest and expiry ({"channel", "seq",
"digest", "expires", "replaced"} with --json). Exit code 0 when published; 1 when another
publisher won a race (release-conflict) or the store failed; 2 for bad usage or input.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLEET_FILE_FLAGS, "release-key": { type: "string" } },
      "release refresh",
    );
    refuseArguments(positionals, "release refresh");
    const { fleet, fleetFile, fleetDir } = await readFleetInput(values, io);
    const releaseKey = await readReleaseKey(values["release-key"], io.env, fleet, fleetFile);
    if (releaseKey === undefined) {
      throw new UsageError(
        "release refresh: --release-key SECRET_FILE is needed to sign the release",
        "or set $NIXSHIP_RELEASE_KEY to the file; its public key is in the fleet's releases.publicKeys",
      );
    }
    const hosts = fleet.hosts.filter((h) => h.delivery === "agent");
    if (hosts.length === 0) {
      throw new UsageError("release refresh: the fleet has no agent hosts: there is no channel");
    }
    const { delivery, close } = await openDelivery(fleet, hosts, { fleetDir, releaseKey });
    try {
      if (delivery.channel === undefined) {
        throw new Error("agent hosts opened a delivery that cannot refresh a channel");
      }
      const { replaced, release } = await delivery.channel.refresh();
      const out = {
        channel: release.release.channel,
        seq: release.release.seq,
        digest: release.digest,
        expires: release.release.expires,
        replaced: replaced.release.seq,
      };
      if (values.json) writeJson(io, out);
      else {
        io.stdout.write(`${out.channel} ${out.seq} ${out.digest}\n`);
        io.stderr.write(
          `release ${out.seq} renews release ${out.replaced} of channel ${out.channel} until ${out.expires}\n`,
        );
      }
      return 0;
    } finally {
      await close();
    }
  },
};
