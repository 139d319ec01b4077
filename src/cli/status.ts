// `nixship status`: what the selected hosts run, live over SSH or from the store.
import { selectHosts } from "../fleet/select.js";
import { futureRolloutText } from "../status/future-rollouts.js";
import { pausedRolloutLine } from "../ui/pause-lines.js";
import { formatStatusTable } from "../ui/status-table.js";
import { withHostStates } from "../views/host-state.js";
import { readStatusView } from "../views/status-view.js";
import { type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, readFleetInput } from "./fleet-input.js";

export const statusCommand: Command = {
  path: ["status"],
  summary: "what the selected hosts run: live over SSH, or from the status objects in the store",
  help: `Usage: nixship status [--fleet FILE] [--on SELECTOR] [--stored] [--json]

ssh hosts are asked live (activate.sh status over SSH): current system, the system profile's
generation and recent generations, and any activation awaiting confirmation. A host that
gives no answer within 60 s, or a malformed one, is shown unreachable with why. ssm and agent
hosts (and every host with --stored) are read from the status objects in the fleet's cache
store (status/hosts/<host>.json), which agents write as they apply releases and deploys
write for ssh and ssm hosts: state (applying, success, failed, rejected), release, desired
and current system, generation, the reason for a failure, and when.

A channel whose current document no key of releases.publicKeys signed is said, and makes the
exit code 1 when an agent host is selected (--json: 'untrustedChannel', with why): agents that
trust only those keys refuse it, and one still trusting a key dropped from them runs it.
A channel whose current release has expired is said (--json: 'expiredChannel'): its hosts keep
what they applied, but an agent that starts afresh refuses it until 'nixship release refresh'.

Agent hosts also show their agent's liveness, from the heartbeats agents write every
heartbeatEvery polls (read with LIST calls: 1,000 hosts a call): offline (no heartbeat for
2 x heartbeatEvery polls), paused, and behind (the channel's current release names the host,
and the host last reported an older one).

An ssh host whose installed secrets are not those its last deploy gave it (a boot emptied its
/run, and its system installs none again: docs/secrets.md) is behind until a deploy installs
them; --json: 'secretsAway'.

A host that runs a system that failed there, and could not go back to an earlier one (a failed
first deploy, or a failed rollback), shows as failed, with since when and why, until a deploy
to it succeeds.

An ssh host (asked live) with a pending boot, left by a deploy --action boot or by a deploy
whose reboot nobody judged (the deployer went away), notes "reboot into SYSTEM unconfirmed
since TIME: the next deploy or rollback decides" (--json: boot.pending), and is not in step
until a deploy or a rollback judges that boot (docs/reboots.md); one whose system profile
names another system than it runs notes "boots next: SYSTEM".

A host drifts when it runs a system nixship did not leave on it (someone ran nixos-rebuild
there): neither the system its status record says it was given (by a deploy, a release or a
rollback) nor the one it ran before that, nor, for an agent host, the one the channel's
current release names, nor (asked live) the one the fleet's last rollout to name it asked of it
while its record is older than that rollout.
ssh hosts are judged by their live answer against their record. A host
whose record says it is applying, refused a release, or failed without saying what it ran
before, or (asked live) whose activation awaits its deploy's confirmation, is not judged. STATE then says drifting, and --json gives the row a 'drift'.

Each host's note (and --json 'origin') says who put the system it runs there and from what
source: the deploy's rollout record (status/rollouts/…: who started it, each flake with its git
commit and whether its tree was dirty; believed only when a key of cache.publicKeys signed it,
as a deploy with --key does), the release its agent applied (the origin document
signed beside it, believed only when a key of releases.publicKeys signed it for that release),
or the rollback and who ran it. Each rollout record and release is read once, whatever the
number of hosts it put there; one that is gone, unreadable or not to be believed is said so,
and so is one that never gave the host the system its record says it runs (a record is its
host's own word).

A host is behind when the newest rollout that named it (among the newest 200 rollout records
in the store, status/rollouts/…, and 64 MiB of them) gave it a system it does not run, and nothing it reported
since says otherwise: the rollout skipped it as unreachable, never started its wave, or it
failed. A host that failed (or was interrupted) before anything changed there, in its connect,
copy or realise, keeps the record it had: it runs what it ran, behind, not failed. An agent's
report that only confirms the entry the rollout left it on is no such word: every release
names every host of the channel, so the host reports on the rollout's own releases (the
rollout record names them), on those of later rollouts of other hosts, and on a refresh
('release refresh': its agent's record says the entry was carried). Another release
('release publish', 'rollback --on') is the newer word.
An ssh host asked live that a running rollout still has in flight (its script running there,
or its checks awaited), yet that runs another system with nothing under way, is behind it too:
its activation ended and the host went back (its deploy killed, or not written yet).
STATE then says behind, and the note (and --json 'behindRollout') names the rollout, why the
host did not get its system, and what it should run. It stays behind until a deploy reaches
it, or a rollback names it again. A rollout record dated more than 5 minutes ahead of this
machine's clock is passed over until its time comes (it would sort first for good), and a
warning names it.

A rollout paused between two waves (the policy's pauseAfter), among the last 20, is named
after the table, with since when, until when, and the commands that answer it ('nixship
rollout resume ID', 'nixship rollout abort ID'), or the answer its deploy has not taken yet;
--json: 'pausedRollouts'. One whose deploy is gone (its record unwritten for 15 minutes, past
its deadline with no outcome taken, or an answer untaken for 2 minutes) waits for nothing and
is not named: its hosts still waiting read as never started.

STATE is the host's state in one word, the same the dashboard shows (docs/dashboard.md):
in-step, drifting, failed, rolled-back, rejected, applying, unconfirmed (a reboot nobody
judged), unbaked (its rollout's bake of the system it runs never finished: interrupted, or its
deployer killed mid-bake; the next deploy bakes it again), offline, paused, behind,
unreported, unreachable or unreadable; --json gives it as each row's 'hostState' (and
'unbaked': {rollout, why, before}).

A host whose last deploy was a boot (--action boot) is unconfirmed, and not in step, until a
deploy or rollback judges that boot: "reboot into SYSTEM unconfirmed since TIME" (live, also
"boots next: SYSTEM"). A dry run (--action dry-activate) writes no record and asks nothing of
a host (an agent reports it on the release's marker alone). A host whose last deploy failed on
the system it runs, and did not go back, is failed, asked live as read stored.

Exit code 1 unless every selected host is in step: reachable (live) and not failed, or last
reported success or applying and, for agent hosts, online and not behind the channel; and in
either case not drifting, and not behind the fleet's last rollout to name it.

Options:
${FLEET_HELP}
  --stored           read every host's status object, also for ssh hosts`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLEET_FLAGS, stored: { type: "boolean" } },
      "status",
    );
    refuseArguments(positionals, "status");
    const { fleet } = await readFleetInput(values, io, "status");
    const hosts = selectHosts(fleet, values.on);
    const { rows, warnings, paused, futureRollout, expiredChannel, untrustedChannel } =
      await readStatusView(fleet, hosts, {
        stored: values.stored,
      });
    if (values.json) {
      writeJson(io, {
        hosts: withHostStates(rows),
        ...(paused.length === 0 ? {} : { pausedRollouts: paused }),
        ...(expiredChannel === undefined ? {} : { expiredChannel }),
        ...(untrustedChannel === undefined ? {} : { untrustedChannel }),
      });
    } else {
      io.stdout.write(formatStatusTable(rows));
      for (const p of paused) io.stdout.write(`${pausedRolloutLine(p, values.fleet)}\n`);
    }
    const passedOver = futureRollout === undefined ? [] : [futureRolloutText(futureRollout)];
    for (const w of [...passedOver, ...warnings]) io.stderr.write(`warning: ${w}\n`);
    // A channel no trusted key signed puts every agent host in doubt: it may run that release.
    const doubted = untrustedChannel !== undefined && hosts.some((h) => h.delivery === "agent");
    return rows.every((r) => r.inStep) && !doubted ? 0 : 1;
  },
};
