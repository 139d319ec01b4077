// `nixship plan` and `nixship deploy`: the same work up to the plan; deploy then rolls out.

import { MAX_DIFF_READS } from "../deploy/closure-diffs.js";
import { planOnly } from "../deploy/deploy.js";
import { DEPLOY_EVENT_TYPES } from "../deploy/events.js";
import { deliveryMode } from "../deploy/open-delivery.js";
import { ABORT_GRACE_MS } from "../deploy/run-rollout.js";
import { REACHABLE_POLL } from "../deploy/survey.js";
import { UsageError } from "../errors.js";
import { actionBakes } from "../fleet/bake.js";
import { requireTrustedSigningKey } from "../fleet/cache-trust.js";
import { DELIVERY_MODES, type DeliveryMode } from "../fleet/fleet.js";
import { selectHosts } from "../fleet/select.js";
import { createDeployRenderer } from "../ui/deploy-progress.js";
import { formatPlan } from "../ui/plan-format.js";
import { type Command, parseFlags, parseIntFlag, refuseArguments, writeJson } from "./command.js";
import {
  FLEET_FLAGS,
  FLEET_HELP,
  FLEET_VALUES,
  ROLLOUT_FLAGS,
  ROLLOUT_HELP,
  ROLLOUT_VALUES,
  readFleetInput,
  readRollout,
  readServeCache,
} from "./fleet-input.js";
import { SYSTEM_FLAG_HELP, withSystemFlags } from "./given-systems.js";
import { INTERRUPTED_EXIT, whileTrapped } from "./interrupts.js";
import { readReleaseKey, readSecretKeyFile } from "./keys-input.js";
import { openMetrics } from "./prometheus-input.js";
import { againFlags, rollOut, type SummaryEvent } from "./roll-out.js";
import { undoRollout } from "./rollback-rollout.js";
import { type FlagValues, usageLine, wrapWords } from "./usage.js";

/** Where the systems are built: the fleet's build section, and --build-host. */
const BUILD_HELP = `  --build-host HOST      evaluate here, build the systems in HOST's store over ssh-ng://
                         ([USER@]HOST, or a fleet host's name; over the fleet's build.host).
                         With nixship on HOST (and an S3 cache the hosts substitute from),
                         HOST stores the NARs itself (push --nars-only, its own credentials)
                         and the deployer checks them against HOST's Nix, then signs and
                         writes the narinfos; otherwise the closures are copied back here
                         and pushed from here, and the deploy says why. Either way the
                         signing key never leaves the deployer. Without it, builds run here and on the fleet's
                         build.builders (Nix's remote builders; host keys checked against
                         ssh.knownHosts). Errors name the builder and what failed on it.`;

/** What the plan says of each host's closure, and where the closures come from. */
const DIFF_HELP = `Per host that changes system, the plan says what changes package by package, as nvd does:
versions changed ([U] upgrade, [D] downgrade, [C] other), packages added and removed, how
many were rebuilt with the same version, and the closure's size before and after; hosts with
the same changes share one line, and --diff prints every change. Names and versions come
from the store paths' names. The desired closure is the local store's (just built). The
closure of the system a host runs is read from the fleet's cache, through the narinfos'
References, so the old system need not be on this machine: only the paths the local store
cannot describe are read (a GET each, at most ${MAX_DIFF_READS.toLocaleString("en")}), and none when the local store
has that system whole. Where neither has it, an ssh host that runs it is asked (activate.sh
closure: its store's paths, sizes and references, at most 700 kB); ssm and agent hosts are
not, and a host without a diff is listed with why. With --json, the plan's "diffs" holds the groups
of hosts with their diff, and the hosts without one with the reason.`;

/** What `plan` accepts, and what its usage line shows each string flag take. */
export const PLAN_FLAGS = {
  ...FLEET_FLAGS,
  action: { type: "string" },
  parallel: { type: "string" },
  canary: { type: "string" },
  "max-failures": { type: "string" },
  reboot: { type: "string" },
  "serve-cache": { type: "string" },
  diff: { type: "boolean" },
  "build-host": { type: "string" },
  system: { type: "string", multiple: true },
} as const;
const PLAN_VALUES: FlagValues<typeof PLAN_FLAGS> = {
  ...FLEET_VALUES,
  action: "A",
  parallel: "N",
  canary: "N",
  "max-failures": "N",
  reboot: "MODE",
  "serve-cache": "HOST:PORT",
  "build-host": "[USER@]HOST",
  system: "HOST=PATH",
};

export const planCommand: Command = {
  path: ["plan"],
  summary: "build the selected hosts' systems and show what a deploy would change",
  help: `${usageLine("plan", PLAN_FLAGS, PLAN_VALUES)}

Builds the systems of the selected hosts (one evaluation, one build), asks every host over
SSH what it runs, and prints per host the current system, the desired one, the action
(activate, skip when it already runs it, or unreachable: no answer within 60 s, or a
malformed one, with why; an ssm host's status command has 60 s to be delivered and 60 s to
run, and is given up after 150 s) and what it must transfer. Past 20 hosts, hosts alike share a row
(same current and desired system, action and kind of note: how many, their transfer, a few
names), and only those that need a person are listed in full (unreachable, host key refused,
failed there, a pending boot, boot unknown); --json lists every host. A host that runs its
desired system is activated again, not skipped, when that system failed there and was not
taken back: by the host's own word, or by its status record (a bake failed and its rollback
never reached it); and so is one whose system came from a rollout that never finished baking
it (interrupted, or its deployer killed mid-bake): its wave bakes it again, and a failed bake
sends it back to what it ran before that rollout. Nothing changes anywhere.

A host whose kernel, initrd or kernel modules would change against what it booted is noted
("needs a reboot"); with --reboot auto or always (or the fleet's policy), the plan says which
hosts the deploy would reboot, and whether their boot loaders count boots.

${DIFF_HELP}

With a cache and deltas on (the default, docs/deltas.md), a "deltas" section says, per group
of hosts that fetch alike, how many paths each fetches from the cache, how many by delta, and
the bytes with the deltas published and without, compressed as the cache holds them (the
transfer column counts the NARs, uncompressed; "at most" for paths not pushed yet); deltas
not computed yet count whole (the deploy computes them while its rollout runs), with the bytes
expected once they are (an estimate); hosts whose running closure could not be read fetch
whole, and hosts that get no delta are named with why (no zstd in the system they run, a copy,
…). --json: the plan's "deltas".

Under each bake's analysis query that reads further back than the bake's interval ×
(failureLimit + 1), a note says its first measurements may count what a host ran before its
switch, and the range or failureLimit that keeps that out. --json: the plan's "bakeNotes".

Options:
${FLEET_HELP}
  --action A         switch (default), boot, test or dry-activate
  --parallel N, --canary N, --max-failures N
                     the waves and failure budget of the deploy given them, as deploy takes
                     them (fleet policy, else 10, 1 and 0); the plan's waves end with when
                     the rollout stops starting waves (--json: "maxFailures")
  --reboot MODE      never, auto or always, as deploy takes it (fleet policy, else never)
  --serve-cache H:P  plan the deploy that serves the fleet's cache on H:P (nothing is
                     served): ssh hosts then substitute, so they can get deltas; without
                     it, they do only when the cache names a \`substituter\`
  --diff             every package change of each host (group), not one line of them
${SYSTEM_FLAG_HELP}
${BUILD_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, PLAN_FLAGS, "plan");
    refuseArguments(positionals, "plan");
    const input = await withSystemFlags(
      await readFleetInput(values, io, "plan"),
      values.system,
      "plan",
    );
    const { policy, policyFlags, action } = readRollout(values, input.fleet, "plan");
    const renderer = createDeployRenderer(io.stderr, values.json ? "plain" : "auto");
    // An interrupt stops Nix too (a SIGTERM reaches nixship alone): exit 130, no build left.
    const report = await whileTrapped("plan", (signal) =>
      planOnly({
        ...input,
        fleetArg: values.fleet,
        selector: values.on,
        action,
        policy,
        policyFlags,
        key: undefined,
        serveCache: readServeCache(values["serve-cache"], input.fleet, "plan"),
        buildHost: values["build-host"],
        signal,
        emit: (e) => {
          if (e.type !== "plan") renderer.onEvent(e);
        },
      }),
    ).finally(() => renderer.finish());
    if (values.json) writeJson(io, report.plan);
    else io.stdout.write(`${formatPlan(report.plan, { diff: values.diff === true })}\n`);
    return 0;
  },
};

/** What `deploy` accepts, and what its usage line shows each string flag take. */
export const DEPLOY_FLAGS = {
  ...FLEET_FLAGS,
  ...ROLLOUT_FLAGS,
  key: { type: "string" },
  "serve-cache": { type: "string" },
  via: { type: "string" },
  "release-key": { type: "string" },
  async: { type: "boolean" },
  "skip-unreachable": { type: "boolean" },
  "allow-failed": { type: "boolean" },
  "wait-reachable": { type: "string" },
  diff: { type: "boolean" },
  "build-host": { type: "string" },
  system: { type: "string", multiple: true },
} as const;
const DEPLOY_VALUES: FlagValues<typeof DEPLOY_FLAGS> = {
  ...FLEET_VALUES,
  ...ROLLOUT_VALUES,
  key: "SECRET_FILE",
  "serve-cache": "HOST:PORT",
  via: "ssh|ssm|agent",
  "release-key": "SECRET_FILE",
  "wait-reachable": "S",
  "build-host": "[USER@]HOST",
  system: "HOST=PATH",
};

export const deployCommand: Command = {
  path: ["deploy"],
  summary: "build, push and roll out to the selected hosts, with health checks and rollback",
  help: `${usageLine("deploy", DEPLOY_FLAGS, DEPLOY_VALUES)}

Builds the selected hosts' systems once, pushes their closures signed into the fleet's cache
(with --key), prints the plan, then rolls out: the canary hosts first, then waves of at most
--parallel hosts. On each host, activate.sh (piped over SSH, nothing installed) realises the
system (from the cache, signatures required; or copied over SSH when the fleet has no
substituter), sets the system profile, runs switch-to-configuration, runs the command health
checks, and waits for the deployer's confirmation. The deployer runs the HTTP health checks
and confirms over a new connection; on any failure the host goes back to its previous
generation. No new wave starts once more than --max-failures hosts failed, or a canary did.
A host that cannot be reached counts as failed from the start (with --max-failures 0, no
wave starts), unless --skip-unreachable lists it in the summary instead. A host whose key
ssh refuses, or that answers with something other than a status, is no outage: it fails
even then.

The plan shows what changes package by package, as 'nixship plan' does (see its help;
--diff shows every change).

Interrupts: the first SIGINT (Ctrl-C) or SIGTERM starts no new host, aborts the hosts in
flight (each goes back to its previous system), waits for them at most ${ABORT_GRACE_MS / 1000} s, prints the
summary (which system each host runs, which rolled back, which is still settling) and exits
130. A second one exits at once; an ssh host still in flight then rolls itself back when its
confirmation window closes (--confirm-timeout, or longer when the HTTP checks need it). An ssm
host's command is cancelled on every instance SSM has not started it on (a tag target's next
ones: they change nothing); an instance running it is followed and sent back, never killed.

Pauses: with the fleet's policy.pauseAfter ("canary", a wave number, or a list), the rollout
stops after that wave is confirmed and waits for an operator: 'nixship rollout resume ID' lets
the next wave start, 'nixship rollout abort ID' stops it and the deploy rolls back the hosts
it changed (as 'nixship rollback --rollout ID' does, in every mode), then exits 1. Either
runs from any machine that reaches the fleet's store; the deploy reads the answer every few
seconds, says (and its --json "paused" event) that it waits and the commands, and its rollout
record says paused. Past policy.pauseTimeout seconds (else 3600) nobody's answer is needed:
policy.onPauseTimeout (abort, else resume) is taken. Ctrl-C while paused starts no later wave
and leaves the record saying interrupted while paused. A pause needs the fleet's cache store.

ssm hosts: each wave is one SSM Run Command (SendCommand of the nixship document, see
'nixship ssm document') to the wave's instances or tag targets, with MaxConcurrency from
--parallel and MaxErrors from the failure budget; the command health checks run on the host.
A host of tag targets is one host: when an instance fails, those that switched go back.

agent hosts: each wave is a signed release of the fleet's channel (--release-key): the wave's
hosts get their new system, and the first release also names the selected hosts that already
run theirs (the channel states the fleet file). Other hosts keep their entries, unless one
names a system that failed on its host: that host gets its last confirmed system (or none
when none is known). The deployer then watches the hosts' status objects (a few LIST calls
per poll) until each reports, or counts it offline after releases.offlineTimeout. A host that
failed is named back to the last system confirmed healthy on it by a rollback release. A
selected host's system that failed on that host is refused unless --allow-failed. With
--async, one release names every selected host and deploy returns: no canary, wave, pause or
bake applies (each agent's own checks still roll its host back). A host whose agent is
offline or paused is not named; it counts under --max-failures as in a watched rollout (past
it, nothing is published), or is skipped with --skip-unreachable.

A host where another deploy is mid-flight (its activation awaits that deploy's confirmation,
or holds the host's lock within its deadline) is never up to date: it may yet go back. The
plan notes it, and deploy refuses to start while any selected host is so, naming each, and
changes nothing (exit 1). An ssh host is activated only if it still runs, at its turn, the
system it answered the plan with: one that another operator's deploy or rollback changed
meanwhile (while this rollout paused, or before its wave) is refused, left as it is, and
named ("changed since"; --json: outcome skipped, reason refused), and the exit code is 1.
So is a host whose lock another activation took after the plan (two deploys started at
once): the other operator's turn there, not a failure of the host, and no rollout is
recorded against it.

Options:
${FLEET_HELP}
${ROLLOUT_HELP}
  --key FILE             secret key that signs the pushed paths (nixship key generate)
  --serve-cache H:P      serve the fleet's cache on H:P while deploying and have the hosts
                         substitute from it (for a lab: "$(nixship lab address):0"); H is
                         what the hosts fetch from: an address of this machine they reach,
                         not loopback (for hosts elsewhere) nor 0.0.0.0 or ::
  --via MODE             ssh, ssm or agent: the mode the selected hosts must have (default:
                         the one they share in the fleet file)
  --release-key FILE     secret key that signs releases for agent hosts (else
                         $NIXSHIP_RELEASE_KEY)
  --skip-unreachable     list hosts that cannot be reached as skipped instead of counting
                         them as failed (for fleets with hosts that are often offline)
  --wait-reachable S     new hosts: wait up to S seconds for each host that cannot be reached
                         yet (ssh: its sshd; ssm: its registration with SSM; agent: its
                         first report), asking again every ${REACHABLE_POLL} s and naming those
                         still awaited; after S, those count as unreachable (default 0: ask
                         once)
  --async                agent hosts: publish the release and return without watching
  --allow-failed         agent hosts: name a host's system even if it failed on that host
  --diff                 the plan shows every package change of each host (group), not one
                         line of them
${SYSTEM_FLAG_HELP}
${BUILD_HELP}

Progress: one line per host on a TTY, plain lines otherwise; past 20 hosts, one line of counts
and the slowest hosts on a TTY (failures printed as they happen), and on a pipe each host's
result without its phases or logs; the plan and the summary then count hosts alike and list
in full those that need a person. With --json, every host and event, NDJSON on
stdout (docs/ci.md), of the types:
${wrapWords(
  DEPLOY_EVENT_TYPES.map((t, i) => (i < DEPLOY_EVENT_TYPES.length - 1 ? `${t},` : t)),
  "  ",
  "  ",
)}
Agent hosts are in the phase "waiting" (for the agent) until they report; every 5 s a
"waiting" event names those that have not. Exit code 0 when every host runs its new system
(or already did, or was skipped as unreachable with --skip-unreachable), 1 otherwise (an
aborted rollout too, once its hosts are rolled back), 2 for
bad usage or input, 130 when interrupted.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, DEPLOY_FLAGS, "deploy");
    refuseArguments(positionals, "deploy");
    const input = await withSystemFlags(
      await readFleetInput(values, io, "deploy"),
      values.system,
      "deploy",
    );
    const { policy, policyFlags, action } = readRollout(values, input.fleet, "deploy");
    const key = values.key !== undefined ? await readSecretKeyFile(values.key) : undefined;
    if (input.fleet.cache !== undefined && key === undefined) {
      throw new UsageError(
        "deploy: the fleet has a cache, so --key SECRET_FILE is needed to sign what is pushed",
      );
    }
    if (input.fleet.cache !== undefined && key !== undefined) {
      requireTrustedSigningKey(key, input.fleet.cache.publicKeys, input.fleetFile);
    }
    const serveCache = readServeCache(values["serve-cache"], input.fleet, "deploy");
    const via = parseVia(values.via);
    const releaseKey = await readReleaseKey(
      values["release-key"],
      io.env,
      input.fleet,
      input.fleetFile,
    );
    // Only a watched switch bakes (not --action boot or test, not --async): no other deploy
    // reads the token.
    const metrics = await openMetrics(input.fleet, actionBakes(action) && values.async !== true);
    // Known before anything runs, for what a second interrupt says about the hosts in flight.
    const mode = deliveryMode(selectHosts(input.fleet, values.on), via);
    const json = values.json === true;
    // With --json, one summary: an abort's rollback is carried in the deploy's.
    const { report, code, summary } = await rollOut(
      io,
      {
        json,
        diff: values.diff === true,
        mode,
        holdSummary: json,
        again: againFlags(values),
      },
      {
        ...input,
        fleetArg: values.fleet,
        selector: values.on,
        action,
        policy,
        policyFlags,
        key,
        serveCache,
        via,
        releaseKey,
        async: values.async === true,
        skipUnreachable: values["skip-unreachable"] === true,
        allowFailed: values["allow-failed"] === true,
        waitReachable: parseIntFlag(values["wait-reachable"], "--wait-reachable", "deploy", 0),
        buildHost: values["build-host"],
        ...(metrics === undefined ? {} : { metrics }),
      },
    );
    const printSummary = (rollback?: SummaryEvent) => {
      if (summary === undefined) return;
      const one: SummaryEvent =
        rollback === undefined
          ? summary
          : {
              ...summary,
              rollback: { ok: rollback.ok, seconds: rollback.seconds, results: rollback.results },
            };
      // As every event is written (NDJSON, stamped with its time).
      createDeployRenderer(io.stdout, "ndjson").onEvent(one);
    };
    if (
      report?.aborted === undefined ||
      report.rollout === undefined ||
      code === INTERRUPTED_EXIT
    ) {
      printSummary();
      return code;
    }
    // Aborted at a pause: the hosts the rollout changed go back, as a rollback of it does.
    let rollback: SummaryEvent | undefined;
    const back = await undoRollout(io, {
      fleet: input.fleet,
      fleetDir: input.fleetDir,
      id: report.rollout,
      selected: undefined,
      force: false,
      json: values.json === true,
      policy,
      policyFlags,
      key,
      serveCache,
      releaseKey,
      again: againFlags(values),
      ...(json
        ? {
            onSummary: (s: SummaryEvent) => {
              rollback = s;
            },
          }
        : {}),
    }).finally(() => printSummary(rollback));
    return back === INTERRUPTED_EXIT ? back : 1;
  },
};

function parseVia(text: string | undefined): DeliveryMode | undefined {
  if (text === undefined) return undefined;
  if ((DELIVERY_MODES as readonly string[]).includes(text)) return text as DeliveryMode;
  throw new UsageError(`deploy: --via must be one of ${DELIVERY_MODES.join(", ")}, got '${text}'`);
}
