// `nixship rollback`: the selected hosts back to their previous (or a chosen) system.

import { HISTORY_RELEASES } from "../channel/history-store.js";
import { openDelivery } from "../deploy/open-delivery.js";
import { recordRollbacks } from "../deploy/push-records.js";
import { UsageError } from "../errors.js";
import { type FleetHost, POLICY_DEFAULTS } from "../fleet/fleet.js";
import { parseRollbackTarget } from "../fleet/rollback-target.js";
import { selectHosts } from "../fleet/select.js";
import { storeName } from "../ui/plan-format.js";
import { type Command, parseFlags, parseIntFlag, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, readFleetInput } from "./fleet-input.js";
import { readSecretKeyFile } from "./keys-input.js";

export const rollbackCommand: Command = {
  path: ["rollback"],
  summary: "switch the selected hosts back to their previous system (or the one --to names)",
  help: `Usage: nixship rollback [--fleet FILE] [--on SELECTOR] [--to TARGET]
                        [--activation-timeout S] [--release-key SECRET_FILE]
                        [--allow-failed] [--json]

ssh and ssm hosts: on every selected host, switches the system profile back to the previous
generation (or to --to's generation) and activates it with switch-to-configuration switch.
Each host rolled back gets a status record naming that system (status/hosts/<host>.json in the
fleet's cache store, when it has one), so 'nixship status' does not take it for drift.

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
      releaseKeyFile !== undefined
        ? await readSecretKeyFile(releaseKeyFile, "--release-key")
        : undefined;
    const { mode, delivery, close } = await openDelivery(fleet, hosts, {
      releaseKey,
      allowFailed: values["allow-failed"] === true,
    });
    const outcomes = await delivery.rollbackHosts(hosts, to, activationTimeout).finally(close);
    // Agents report a rollback release themselves; push modes leave the record here.
    const unrecorded =
      mode === "agent" || fleet.cache === undefined
        ? undefined
        : await recordRollbacks(
            fleet.cache.url,
            mode,
            outcomes.map((outcome, i) => ({ host: (hosts[i] as FleetHost).name, outcome })),
          );
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
    return rows.every((r) => r.status === "rolled-back") ? 0 : 1;
  },
};
