// `nixship status`: what the selected hosts run, live over SSH or from the store.
import type { HostStatus } from "../delivery/delivery.js";
import { SshDelivery } from "../delivery/ssh.js";
import { UsageError } from "../errors.js";
import type { FleetHost } from "../fleet/fleet.js";
import { selectHosts } from "../fleet/select.js";
import { type AgentStanding, inStep } from "../fleet/standing.js";
import { readStanding } from "../fleet/standing-store.js";
import type { StatusRecord } from "../fleet/status.js";
import { readStatuses } from "../fleet/status-store.js";
import { openStore } from "../store/url.js";
import { formatStatusTable, type StatusRow } from "../ui/status-table.js";
import { mapLimit } from "../util/pool.js";
import { type Command, parseFlags, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, readFleetInput } from "./fleet-input.js";

/** Hosts asked at once. */
const CONCURRENCY = 32;

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

Agent hosts also show their agent's liveness, from the heartbeats agents write every
heartbeatEvery polls (read with LIST calls: 1,000 hosts a call): offline (no heartbeat for
2 x heartbeatEvery polls), paused, and behind (the channel's current release names the host,
and the host last reported an older one).

A host that runs a system that failed there, and could not go back to an earlier one (a failed
first deploy, or a failed rollback), shows as failed, with since when and why, until a deploy
to it succeeds.

Exit code 1 unless every selected host is in step: reachable (live) and not failed, or last reported success
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
    let unreadable = new Map<string, string>();
    let standing = new Map<string, AgentStanding>();
    if (stored.length > 0) {
      if (fleet.cache === undefined) {
        throw new UsageError(
          "status: status objects live in the fleet's cache store, and the fleet has no cache",
        );
      }
      const store = await openStore(fleet.cache.url);
      try {
        ({ records, unreadable } = await readStatuses(
          store,
          stored.map((h) => h.name),
          CONCURRENCY,
        ));
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
          // A host that runs a system that failed there is not in step.
          inStep: status.reachable && status.failed === undefined,
          ...status,
        };
      }
      const record = records.get(h.name);
      const agent = standing.get(h.name);
      const problem = unreadable.get(h.name);
      if (problem !== undefined) {
        return {
          host: h.name,
          mode: h.delivery,
          source: "stored",
          inStep: false,
          reported: true,
          unreadable: problem,
        };
      }
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
