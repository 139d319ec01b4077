// `nixship build`, `nixship status` and `nixship rollback`: per-host questions and actions.

import { buildSystems } from "../deploy/build.js";
import { deliveryFor } from "../deploy/deploy.js";
import { UsageError } from "../errors.js";
import { selectHosts } from "../fleet/select.js";
import { formatTable, storeName } from "../ui/plan-format.js";
import { mapLimit } from "../util/pool.js";
import { type Command, parseFlags, parseIntFlag, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, readFleetInput } from "./fleet-input.js";

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
  summary: "ask the selected hosts what they run: system, generation, pending confirmation",
  help: `Usage: nixship status [--fleet FILE] [--on SELECTOR] [--json]

Asks every selected host over SSH (activate.sh status) for its current system, its system
profile's generation and recent generations, and any activation awaiting confirmation.
Exit code 1 if a host cannot be reached.

Options:
${FLEET_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, FLEET_FLAGS, "status");
    if (positionals.length > 0)
      throw new UsageError(`status: unexpected argument '${positionals[0]}'`);
    const { fleet } = await readFleetInput(values, io);
    const hosts = selectHosts(fleet, values.on);
    const delivery = deliveryFor(fleet, hosts);
    const states = await mapLimit(hosts, CONCURRENCY, (h) => delivery.status(h));
    const rows = hosts.map((h, i) => ({ host: h.name, ...states[i] }));
    if (values.json) writeJson(io, { hosts: rows });
    else {
      const table = [
        ["HOST", "CURRENT", "GENERATION", "NOTE"],
        ...rows.map((r) =>
          r.reachable
            ? [
                r.host,
                r.current ? storeName(r.current) : "(none)",
                String(r.generation ?? "-"),
                [
                  r.profile && r.profile !== r.current ? `boots next: ${storeName(r.profile)}` : "",
                  r.pending ? `awaiting confirmation (${r.pending})` : "",
                ]
                  .filter(Boolean)
                  .join("; "),
              ]
            : [r.host, "-", "-", `unreachable: ${r.error}`],
        ),
      ];
      io.stdout.write(`${formatTable(table).join("\n")}\n`);
    }
    return rows.every((r) => r.reachable) ? 0 : 1;
  },
};

export const rollbackCommand: Command = {
  path: ["rollback"],
  summary: "switch the selected hosts back to their previous generation (or generation N)",
  help: `Usage: nixship rollback [--fleet FILE] [--on SELECTOR] [--to GENERATION] [--json]

On every selected host, switches the system profile back to the previous generation (or to
GENERATION) and activates it with switch-to-configuration switch. Exit code 1 if any host
could not be rolled back.

Options:
${FLEET_HELP}
  --to N             the generation to go back to (default: the one before the current)`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLEET_FLAGS, to: { type: "string" } },
      "rollback",
    );
    if (positionals.length > 0)
      throw new UsageError(`rollback: unexpected argument '${positionals[0]}'`);
    const to = parseIntFlag(values.to, "--to", "rollback", 1);
    const { fleet } = await readFleetInput(values, io);
    const hosts = selectHosts(fleet, values.on);
    const delivery = deliveryFor(fleet, hosts);
    const outcomes = await mapLimit(hosts, CONCURRENCY, (h) => delivery.rollback(h, to));
    const rows = hosts.map((h, i) => ({ host: h.name, ...outcomes[i] }));
    if (values.json) writeJson(io, { hosts: rows });
    else {
      for (const r of rows) {
        io.stdout.write(
          r.status === "rolled-back"
            ? `${r.host}: rolled back to generation ${r.generation} (${storeName(r.path)})\n`
            : `${r.host}: FAILED: ${r.message}\n`,
        );
      }
    }
    return rows.every((r) => r.status === "rolled-back") ? 0 : 1;
  },
};
