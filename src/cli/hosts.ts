// `nixship build`, `nixship status` and `nixship rollback`: per-host questions and actions.

import type { HostStatus } from "../delivery/delivery.js";
import { SshDelivery } from "../delivery/ssh.js";
import { buildSystems } from "../deploy/build.js";
import { openDelivery } from "../deploy/open-delivery.js";
import { UsageError } from "../errors.js";
import { type FleetHost, POLICY_DEFAULTS } from "../fleet/fleet.js";
import { HISTORY_RELEASES } from "../fleet/history-store.js";
import { parseRollbackTarget } from "../fleet/rollback-target.js";
import { selectHosts } from "../fleet/select.js";
import { type AgentStanding, inStep } from "../fleet/standing.js";
import { readStanding } from "../fleet/standing-store.js";
import type { StatusRecord } from "../fleet/status.js";
import { readStatuses } from "../fleet/status-store.js";
import { openStore } from "../store/url.js";
import { storeName } from "../ui/plan-format.js";
import { formatStatusTable, type StatusRow } from "../ui/status-table.js";
import { mapLimit } from "../util/pool.js";
import { type Command, parseFlags, parseIntFlag, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, readFleetInput } from "./fleet-input.js";
import { readSecretKeyFile } from "./keys-input.js";

/** Hosts asked at once by status and rollback. */
const CONCURRENCY = 32;

export const buildCommand: Command = {
  path: ["build"],
  summary: "build the selected hosts' systems: one evaluation and one build for all",
  help: `Usage: nixship build [--fleet FILE] [--on SELECTOR] [--json]

Evaluates the systems of the selected hosts in one Nix evaluation and builds them in one
'nix build'; hosts with the same system share the result. Prints each system's store path
and the hosts that run it.

Options:
${FLEET_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, FLEET_FLAGS, "build");
    if (positionals.length > 0)
      throw new UsageError(`build: unexpected argument '${positionals[0]}'`);
    const { fleet, fleetDir } = await readFleetInput(values, io);
    const built = await buildSystems(selectHosts(fleet, values.on), fleetDir);
    if (values.json) {
      writeJson(io, { systems: built.systems, hosts: Object.fromEntries(built.byHost) });
      return 0;
    }
    for (const s of built.systems) io.stdout.write(`${s.path}\t${s.hosts.join(",")}\n`);
    return 0;
  },
};

export const statusCommand: Command = {
  path: ["status"],
  summary: "what the selected hosts run: live over SSH, or from the status objects in the store",
  help: `Usage: nixship status [--fleet FILE] [--on SELECTOR] [--stored] [--json]

ssh hosts are asked live (activate.sh status over SSH): current system, the system profile's
generation and recent generations, and any activation awaiting confirmation. ssm and agent
hosts (and every host with --stored) are read from the status objects in the fleet's cache
store (status/hosts/<host>.json), which agents write as they apply releases and deploys
write for ssh and ssm hosts: state (applying, success, failed, rejected), release, desired
and current system, generation, the reason for a failure, and when.

Agent hosts also show their agent's liveness, from the heartbeats agents write every
heartbeatEvery polls (read with LIST calls: 1,000 hosts a call): offline (no heartbeat for
2 x heartbeatEvery polls), paused, and behind (the channel's current release names the host,
and the host last reported an older one).

Exit code 1 unless every selected host is in step: reachable (live), or last reported success
or applying and, for agent hosts, online and not behind the channel.

Options:
${FLEET_HELP}
  --stored           read every host's status object, also for ssh hosts`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLEET_FLAGS, stored: { type: "boolean" } },
      "status",
    );
    if (positionals.length > 0)
      throw new UsageError(`status: unexpected argument '${positionals[0]}'`);
    const { fleet } = await readFleetInput(values, io);
    const hosts = selectHosts(fleet, values.on);
    const fromStore = (h: FleetHost) => values.stored === true || h.delivery !== "ssh";
    const stored = hosts.filter(fromStore);
    let records = new Map<string, StatusRecord>();
    let standing = new Map<string, AgentStanding>();
    if (stored.length > 0) {
      if (fleet.cache === undefined) {
        throw new UsageError(
          "status: status objects live in the fleet's cache store, and the fleet has no cache",
        );
      }
      const store = await openStore(fleet.cache.url);
      try {
        records = await readStatuses(
          store,
          stored.map((h) => h.name),
          CONCURRENCY,
        );
        const agents = stored.filter((h) => h.delivery === "agent");
        if (agents.length > 0) standing = await readStanding(store, fleet, agents, records);
      } finally {
        await store.close();
      }
    }
    const ssh = new SshDelivery(fleet.ssh);
    const live = await mapLimit(
      hosts,
      CONCURRENCY,
      async (h): Promise<HostStatus | undefined> => (fromStore(h) ? undefined : ssh.status(h)),
    );
    const rows = hosts.map((h, i): StatusRow => {
      const status = live[i];
      if (status !== undefined) {
        return {
          host: h.name,
          mode: h.delivery,
          source: "live",
          inStep: status.reachable,
          ...status,
        };
      }
      const record = records.get(h.name);
      const agent = standing.get(h.name);
      return {
        host: h.name,
        mode: h.delivery,
        source: "stored",
        inStep: inStep(record, agent),
        reported: record !== undefined,
        ...(record ?? {}),
        ...(agent ?? {}),
      };
    });
    if (values.json) writeJson(io, { hosts: rows });
    else io.stdout.write(formatStatusTable(rows));
    return rows.every((r) => r.inStep) ? 0 : 1;
  },
};

export const rollbackCommand: Command = {
  path: ["rollback"],
  summary: "switch the selected hosts back to their previous system (or the one --to names)",
  help: `Usage: nixship rollback [--fleet FILE] [--on SELECTOR] [--to TARGET]
                        [--activation-timeout S] [--release-key SECRET_FILE]
                        [--allow-failed] [--json]

ssh and ssm hosts: on every selected host, switches the system profile back to the previous
generation (or to --to's generation) and activates it with switch-to-configuration switch.

agent hosts: publishes one signed rollback release of the fleet's channel (--release-key)
that names, for each selected host, the last system confirmed healthy on it before the one
the channel names for it now (from the status markers of the channel's last
${HISTORY_RELEASES} releases), then waits until the hosts report it applied (at most
releases.offlineTimeout). Rolling back again walks further back through the confirmed
systems; it never returns to the one it left. Other hosts keep their entries, except an
entry naming a system that failed on its host, which becomes that host's last confirmed
system. A system that failed on a host is refused for it unless --allow-failed.

Exit code 1 if any host could not be rolled back; 2 for bad flags or fleet files.

Options:
${FLEET_HELP}
  --to TARGET        where to go instead of one step back:
                       N or generation:N  the system profile's generation N (agent hosts:
                                          the system the host last reported as generation N)
                       release:N          agent hosts: the system release N named for the host
                       /nix/store/PATH    agent hosts: that system
  --allow-failed     agent hosts: allow --to a system that failed on the host
  --activation-timeout S
                     ssh and ssm hosts: seconds the switch back may run before the host stops
                     it and stays where it was (fleet policy, else ${POLICY_DEFAULTS.activationTimeout}); agent hosts
                     use their own config's activationTimeout
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
      },
      "rollback",
    );
    if (positionals.length > 0)
      throw new UsageError(`rollback: unexpected argument '${positionals[0]}'`);
    const to = values.to === undefined ? undefined : parseRollbackTarget(values.to);
    const { fleet } = await readFleetInput(values, io);
    const activationTimeout =
      parseIntFlag(values["activation-timeout"], "--activation-timeout", "rollback", 1) ??
      fleet.policy.activationTimeout;
    const hosts = selectHosts(fleet, values.on);
    const releaseKeyFile = values["release-key"] ?? io.env.NIXSHIP_RELEASE_KEY;
    const releaseKey =
      releaseKeyFile !== undefined ? await readSecretKeyFile(releaseKeyFile) : undefined;
    const { delivery, close } = await openDelivery(fleet, hosts, {
      releaseKey,
      allowFailed: values["allow-failed"] === true,
    });
    const outcomes = await delivery.rollbackHosts(hosts, to, activationTimeout).finally(close);
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
    return rows.every((r) => r.status === "rolled-back") ? 0 : 1;
  },
};
