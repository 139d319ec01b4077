// `nixship rollback`: a rollout undone (rollback-rollout.ts), or with --on / --to the selected
// hosts back to their previous (or a chosen) system.

import { CacheLease } from "../cache/gc-lease.js";
import { HISTORY_RELEASES } from "../channel/history-store.js";
import { openDelivery } from "../deploy/open-delivery.js";
import { recordRollbacks } from "../deploy/push-records.js";
import { UsageError } from "../errors.js";
import { requireTrustedSigningKey } from "../fleet/cache-trust.js";
import { type FleetHost, POLICY_DEFAULTS } from "../fleet/fleet.js";
import {
  applyOverride,
  longestActivationTimeout,
  type PolicyOverride,
} from "../fleet/host-policy.js";
import { POLICY_RANGES } from "../fleet/read-policy.js";
import { parseRollbackTarget } from "../fleet/rollback-target.js";
import { selectHosts } from "../fleet/select.js";
import { ROLLOUT_ID } from "../status/rollout.js";
import { formatLeaseEvent } from "../ui/lease-events.js";
import { storeName } from "../ui/plan-format.js";
import { type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import {
  FLEET_FLAGS,
  fleetHelp,
  rangedFlag,
  readFleetInput,
  readServeCache,
} from "./fleet-input.js";
import { INTERRUPTED_EXIT, trapInterrupts } from "./interrupts.js";
import { readReleaseKey, readSecretKeyFile } from "./keys-input.js";
import { againFlags } from "./roll-out.js";
import { undoRollout } from "./rollback-rollout.js";

export const rollbackCommand: Command = {
  path: ["rollback"],
  summary: "undo the last rollout (or --rollout ID); with --on, hosts back one generation",
  help: `Usage: nixship rollback [--fleet FILE] [--rollout ID] [--force] [--key SECRET_FILE]
                        [--serve-cache HOST:PORT] [--release-key SECRET_FILE] [--json]
       nixship rollback --on SELECTOR [--to TARGET] [--activation-timeout S]
                        [--release-key SECRET_FILE] [--allow-failed] [--json]

Without --on and --to, rollback undoes the newest rollout that named a selected host (or the
rollout --rollout ID names; its id is in the deploy's summary, 'nixship status' and the
dashboard; a record dated more than 5 minutes ahead of this machine's clock is not taken for
the newest, and a warning names it): each host that rollout changed goes back to the system it ran before it. A host it
skipped (unreachable), never reached, found up to date, or failed on stays where it is, and is
named (what an ssm host runs is asked of it through SSM, as plan asks: its status record may
lag a command that went on without its deployer). A host that runs something else than what
the rollout left on it (changed since, by hand
or by a later rollout) is refused, with why, unless --force; this is checked again when the
host's turn comes (by the host under its activation lock; for agent hosts, against the channel
the release is built on), so a deploy that lands while the rollback runs stays (the host is
reported refused). A host whose state cannot be told (unreachable, or more rollouts since than
a rollback reads) is refused too, and the rollout still stands for it: it stays behind that
rollout in every view, and the next rollback asks again. A dry run (--action dry-activate)
changed nothing: it is never the rollout undone, and never counts as a change since. The plan
of the rollback is shown first (with --json, an "undo-plan"
line), then it runs as a deploy of those systems in every mode (waves, health checks, the
deploy's --json events) and writes a rollout record of its own
that names the rollout it undid and every host it left; hosts that stay keep what they run
(agent hosts: the channel names it for them; a refused agent host that runs another system
than its channel entry, one switched by hand, gets no entry in the rollback's release, so its
agent leaves it as it is). As for deploy, a fleet with a cache needs --key
to sign what is pushed (systems the local store lacks are fetched from the cache first,
verified). A host the rollout changed that the fleet file no longer has (removed, or
renamed) is named, not undone: add it back to roll it back. Exit code 1 if a host that should
go back did not, or a host was refused or not undone so, or the rollout is still running or
paused (--json error codes rollout-running, rollout-paused).

With --on (or --to), the selected hosts go back as before, one generation:

ssh and ssm hosts: on every selected host, switches the system profile back to the previous
generation (or to --to's generation) and activates it with switch-to-configuration switch.
Each host rolled back gets a status record naming that system (status/hosts/<host>.json in the
fleet's cache store, when it has one), so 'nixship status' does not take it for drift.

agent hosts: publishes one signed rollback release of the fleet's channel (--release-key)
that names, for each selected host, the last system confirmed healthy on it before the one
the channel names for it now (from the status markers of the channel's last
${HISTORY_RELEASES} releases, refreshes not counted), then waits until the hosts report it applied (at most
releases.offlineTimeout). Rolling back again walks further back through the confirmed
systems; it never returns to the one it left. Other hosts keep their entries, except an
entry naming a system that failed on its host, which becomes that host's last confirmed
system. A system that failed on a host is refused for it unless --allow-failed.

An interrupt (Ctrl-C, SIGTERM) waits for the rollbacks under way, which go on without the
deployer, and writes their records; a second one stops at once.

Exit code 1 if any host could not be rolled back; 2 for bad flags or fleet files; 130 when
interrupted.

Options:
${fleetHelp(`hosts by name or tag: web1,@web,@db-*: with --to, or alone, they go back one
                     generation; with --rollout, the hosts of that rollout to undo (without
                     --on and --to: the newest rollout is undone, every host it changed)`)}
  --to TARGET        where to go instead of one step back:
                       N or generation:N  the system profile's generation N (agent hosts:
                                          the system the host last reported as generation N)
                       release:N          agent hosts: the system release N named for the host
                       /nix/store/PATH    agent hosts: that system
  --rollout ID       the rollout to undo (default: the newest naming a selected host)
  --force            send back hosts changed since the rollout too
  --key FILE         secret key that signs what is pushed into the fleet's cache
  --serve-cache H:P  serve the fleet's cache on H:P while rolling back (as deploy does)
  --allow-failed     agent hosts: allow --to a system that failed on the host
  --activation-timeout S
                     ssh and ssm hosts: seconds the switch back may run before the host stops
                     it and goes back to the generation it was on, as when the switch fails
                     (the hosts' policy, a role's where it sets one: the longest of
                     them; else ${POLICY_DEFAULTS.activationTimeout}); agent hosts use their own config's
                     activationTimeout
  --release-key FILE secret key that signs the rollback release for agent hosts (else
                     $NIXSHIP_RELEASE_KEY)`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...FLEET_FLAGS,
        to: { type: "string" },
        "activation-timeout": { type: "string" },
        "release-key": { type: "string" },
        "allow-failed": { type: "boolean" },
        rollout: { type: "string" },
        force: { type: "boolean" },
        key: { type: "string" },
        "serve-cache": { type: "string" },
      },
      "rollback",
    );
    refuseArguments(positionals, "rollback");
    const to = values.to === undefined ? undefined : parseRollbackTarget(values.to);
    const byRollout = values.rollout !== undefined || (values.on === undefined && to === undefined);
    if (values.rollout !== undefined && to !== undefined) {
      throw new UsageError(
        "rollback: --rollout sends each host back to what it ran before that rollout; --to names one target for every host",
        "give one of them",
      );
    }
    if (values.rollout !== undefined && !ROLLOUT_ID.test(values.rollout)) {
      throw new UsageError(
        `rollback: --rollout expects a rollout's id (hex, as the deploy's summary names it), got '${values.rollout}'`,
      );
    }
    if (!byRollout) {
      for (const flag of ["force", "key", "serve-cache"] as const) {
        if (values[flag] !== undefined) {
          throw new UsageError(
            `rollback: --${flag} is for undoing a rollout (without --on and --to, or with --rollout)`,
          );
        }
      }
    }
    const input = await readFleetInput(values, io, "rollback");
    const { fleet } = input;
    const timeoutFlag = rangedFlag(
      values["activation-timeout"],
      "--activation-timeout",
      "rollback",
      POLICY_RANGES.activationTimeout,
    );
    // The flag wins over every role's policy, as a deploy's flags do.
    const policyFlags: PolicyOverride =
      timeoutFlag === undefined ? {} : { activationTimeout: timeoutFlag };
    const hosts = selectHosts(fleet, values.on);
    const releaseKey = await readReleaseKey(values["release-key"], io.env, fleet, input.fleetFile);
    if (byRollout) {
      const key = values.key !== undefined ? await readSecretKeyFile(values.key) : undefined;
      if (fleet.cache !== undefined && key === undefined) {
        throw new UsageError(
          "rollback: the fleet has a cache, so --key SECRET_FILE is needed to sign what is pushed (a rollback of a rollout is a deploy of the systems the hosts ran before)",
          "or send hosts back one generation with --on SELECTOR",
        );
      }
      if (fleet.cache !== undefined && key !== undefined) {
        requireTrustedSigningKey(key, fleet.cache.publicKeys, input.fleetFile);
      }
      return await undoRollout(io, {
        fleet,
        fleetDir: input.fleetDir,
        id: values.rollout,
        selected: values.on === undefined ? undefined : hosts,
        force: values.force === true,
        json: values.json === true,
        policy: applyOverride(fleet.policy, policyFlags),
        policyFlags,
        key,
        serveCache: readServeCache(values["serve-cache"], fleet, "rollback"),
        releaseKey,
        again: againFlags(values),
      });
    }
    const { mode, delivery, store, close } = await openDelivery(fleet, hosts, {
      fleetDir: input.fleetDir,
      releaseKey,
      allowFailed: values["allow-failed"] === true,
    });
    // A host's rollback, once started, goes on without the deployer (activate.sh keeps its lock
    // and its deadline): a first interrupt waits for them and writes their records, so that the
    // store does not go on naming the systems they left; a second one exits at once.
    const trap = trapInterrupts({
      first: () =>
        io.stderr.write(
          "rollback: interrupted; the hosts' rollbacks finish on their own: waiting for them to write their records (interrupt again to stop at once, leaving the records behind)\n",
        ),
      second: () => io.stderr.write("rollback: stopped at once\n"),
    });
    let outcomes: Awaited<ReturnType<typeof delivery.rollbackHosts>>;
    let unrecorded: string | undefined;
    // An agent host's rollback is a release naming a system in the cache: leased from before
    // the channel is read until the agents are watched, so that no collection sweeps it
    // meanwhile (a push mode's host goes back to a generation it holds itself).
    let lease: CacheLease | undefined;
    try {
      try {
        if (mode === "agent" && store !== undefined) {
          lease = await CacheLease.take(store, "rollback", {
            onEvent: (e) => io.stderr.write(`${formatLeaseEvent(e)}\n`),
            signal: trap.signal,
          });
        }
        outcomes = await delivery.rollbackHosts(
          hosts,
          to,
          timeoutFlag ?? longestActivationTimeout(fleet, hosts),
        );
      } finally {
        await lease?.release();
        await close();
      }
      // Agents report a rollback release themselves; push modes leave the record here.
      unrecorded =
        mode === "agent" || fleet.cache === undefined
          ? undefined
          : await recordRollbacks(
              fleet.cache.url,
              mode,
              outcomes.map((outcome, i) => ({ host: (hosts[i] as FleetHost).name, outcome })),
            );
    } finally {
      trap.release();
    }
    const rows = hosts.map((h, i) => ({ host: h.name, ...outcomes[i] }));
    if (values.json) writeJson(io, { hosts: rows });
    else {
      for (const r of rows) {
        io.stdout.write(
          r.status === "rolled-back"
            ? `${r.host}: rolled back to ${r.generation === null ? "" : `generation ${r.generation} `}(${storeName(r.path)})\n`
            : `${r.host}: FAILED: ${r.message}\n`,
        );
      }
    }
    if (unrecorded !== undefined) io.stderr.write(`warning: ${unrecorded}\n`);
    if (trap.signal.aborted) return INTERRUPTED_EXIT;
    return rows.every((r) => r.status === "rolled-back") ? 0 : 1;
  },
};
