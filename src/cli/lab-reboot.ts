// `nixship lab reboot HOST`: a lab host reboots as a machine would (see lab/lab-reboot.ts).
import { UsageError } from "../errors.js";
import { findLabHost, labsDir } from "../lab/lab.js";
import { type BootAttempt, labReboot } from "../lab/lab-reboot.js";
import { validateLabName } from "../lab/layout.js";
import { type Command, parseFlags, writeJson } from "./command.js";

export const labRebootCommand: Command = {
  path: ["lab", "reboot"],
  summary: "reboot a lab host as a machine would (boot loader, counted tries, fallback)",
  help: `Usage: nixship lab reboot HOST [--name PREFIX] [--entry GEN] [--after S] [--json]

Reboots one host of a lab. Its agent stops first, as its service unit stops it (it finishes
the activation in progress, if any), then everything else in its namespaces (sshd and every
session, its services); its /run, /tmp and /root start empty again. The host's boot loader (a
stand-in for systemd-boot as NixOS installs it) has one entry per generation of the host's
system profile and boots the profile's current one: the system's init points
/run/booted-system at it and starts its services, then sshd starts (and the host's agent,
in a lab with agents).

A host started with 'lab up --boot-counting T' counts boots: a new entry has T tries; each
boot of it spends one, and 'systemd-bless-boot good' on the host (what nixship runs once a
rebooted system passes its checks) keeps it for good. An entry whose tries are spent is
skipped: the loader falls back to the newest entry that has tries left (the previous
generation). A system that does not boot is tried again at once while its entry has tries
left; without counting, the host stays down (a machine at its boot menu or a panic), and
'lab list' shows it not running.

--entry GEN boots the entry of generation GEN, as someone at the boot menu picks it: a way
back for a host whose new system does not boot and whose loader does not count boots (it is
down): reboot it into the previous generation, then 'nixship rollback --on HOST' puts the profile back.
The profile is not changed by the pick, and an entry that counts boots spends a try.

A host asks for its own reboot with /run/nixship-lab/power reboot (the example systems'
systemctl reboot does), which runs this command from the machine's side with --after 1.

Options:
  --name PREFIX  the lab (default: the one that has HOST)
  --entry GEN    boot generation GEN's entry this time (a pick at the boot menu)
  --after S      wait S seconds before the host goes down (0-60; default 0)
  --json         print the attempts as JSON
Exit status: 0 when the host is up again, 1 when it did not boot.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        name: { type: "string" },
        after: { type: "string" },
        entry: { type: "string" },
        json: { type: "boolean" },
      },
      "lab reboot",
    );
    if (positionals.length !== 1) throw new UsageError("lab reboot: give one host name");
    const after = Number(values.after ?? "0");
    if (!Number.isInteger(after) || after < 0 || after > 60) {
      throw new UsageError(`lab reboot: --after takes whole seconds, 0-60; got '${values.after}'`);
    }
    const entry = values.entry === undefined ? undefined : Number(values.entry);
    if (entry !== undefined && !(Number.isSafeInteger(entry) && entry >= 1)) {
      throw new UsageError(
        `lab reboot: --entry takes a generation number (1 or more); got '${values.entry}'`,
      );
    }
    const host = positionals[0] as string;
    // Without --name, the lab that has the host (as 'lab exec' and 'lab agents' find it).
    const lab =
      values.name === undefined
        ? (await findLabHost(labsDir(io.env), host, undefined, { down: true })).lab
        : validateLabName(values.name);
    const result = await labReboot(labsDir(io.env), lab, host, {
      after,
      ...(entry === undefined ? {} : { entry }),
      onAttempt: (a) => {
        if (!values.json) io.stderr.write(`${describeAttempt(host, a)}\n`);
      },
    });
    if (values.json) writeJson(io, result);
    else if (!result.up) io.stderr.write(`${host} did not boot; it is down\n`);
    return result.up ? 0 : 1;
  },
};

function describeAttempt(host: string, a: BootAttempt): string {
  const entry =
    a.generation === undefined
      ? "no system profile (nothing to boot but sshd)"
      : `generation ${a.generation}${a.triesLeft === undefined ? "" : ` (${a.triesLeft} tries left)`}`;
  if (a.booted) return `${host}: booted ${entry}`;
  const why =
    a.console
      ?.split("\n")
      .filter((l) => !l.startsWith("nixship-lab:"))
      .pop() ?? "";
  return `${host}: ${entry} did not boot${why ? `: ${why}` : ""}`;
}
