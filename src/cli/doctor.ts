// `nixship doctor`: checks what a deploy needs, and prints the exact fix for each problem.
import { access } from "node:fs/promises";
import { blocksDeploy, type Check, fail, skip } from "../doctor/check.js";
import { checkFleet, type GivenKey } from "../doctor/fleet-checks.js";
import { judgeNix, probeNix } from "../doctor/local-nix.js";
import { InputError, UsageError } from "../errors.js";
import { DEFAULT_FLEET_FILE } from "../fleet/load-fleet.js";
import { selectHosts } from "../fleet/select.js";
import { formatDoctorReport } from "../ui/doctor-report.js";
import { type CliIO, type Command, parseFlags, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, readFleetInput } from "./fleet-input.js";
import { readSecretKeyFile } from "./keys-input.js";

export const doctorCommand: Command = {
  path: ["doctor"],
  summary:
    "check Nix, ssh, keys, the fleet, its cache and its hosts; print the fix for each problem",
  help: `Usage: nixship doctor [--fleet FILE] [--on SELECTOR] [--key SECRET_FILE]
                      [--release-key SECRET_FILE] [--json]

Checks, and for each problem prints the exact fix:
  nix     the local Nix: version, experimental features (nix-command, flakes), and that a
          trivial derivation builds (build users and sandbox, named when they are why not)
  fleet   the fleet file parses
  keys    --key parses, is mode 0600 and its public half is in cache.publicKeys; the same
          for --release-key ($NIXSHIP_RELEASE_KEY) and releases.publicKeys (agent hosts)
  cache   the cache is reachable and holds a binary cache (nix-cache-info); with agent
          hosts, that the store honours conditional writes (probe objects, then removed)
  ssh     the ssh client, the fleet's known_hosts and ssh_config
  host    each selected ssh host: a new ssh connection (host key checked), Nix present,
          /nix/store writable
  ssm     a region for SSM hosts

Without a fleet file only the local Nix is checked.

Options:
${FLEET_HELP}
  --key FILE         the cache signing key deploys will use
  --release-key FILE the release signing key (default: $NIXSHIP_RELEASE_KEY)

Exit codes: 0 nothing blocks a deploy (warnings may be printed), 1 something does,
2 bad usage.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLEET_FLAGS, key: { type: "string" }, "release-key": { type: "string" } },
      "doctor",
    );
    if (positionals.length > 0)
      throw new UsageError(`doctor: unexpected argument '${positionals[0]}'`);
    const checks: Check[] = judgeNix(await probeNix(io.env));
    checks.push(...(await fleetChecks(values, io)));
    if (values.json) writeJson(io, { ok: !blocksDeploy(checks), checks });
    else io.stdout.write(formatDoctorReport(checks));
    return blocksDeploy(checks) ? 1 : 0;
  },
};

async function fleetChecks(
  values: { fleet?: string; on?: string; key?: string; "release-key"?: string },
  io: CliIO,
): Promise<Check[]> {
  const { env } = io;
  const named = values.fleet ?? env.NIXSHIP_FLEET;
  if (
    named === undefined &&
    !(await access(DEFAULT_FLEET_FILE).then(
      () => true,
      () => false,
    ))
  ) {
    return [
      skip(
        "fleet",
        "fleet file",
        `none given and no ./${DEFAULT_FLEET_FILE}: only the local Nix was checked`,
      ),
    ];
  }
  let input: Awaited<ReturnType<typeof readFleetInput>>;
  try {
    input = await readFleetInput(values, io);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return [
      fail(
        "fleet",
        "fleet file",
        err.message,
        err.hint ?? "fix the fleet file as the message says",
      ),
    ];
  }
  const keys: Check[] = [];
  const readKey = async (file: string | undefined, name: string): Promise<GivenKey | undefined> => {
    if (file === undefined) return undefined;
    try {
      return await readSecretKeyFile(file);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      keys.push(fail("keys", name, err.message, err.hint ?? "fix the key file"));
      return "unreadable";
    }
  };
  const key = await readKey(values.key, "cache signing key");
  const releaseKey = await readKey(values["release-key"] ?? env.NIXSHIP_RELEASE_KEY, "release key");
  const hosts = selectHosts(input.fleet, values.on);
  return [
    ...keys,
    ...(await checkFleet({
      fleet: input.fleet,
      fleetFile: input.fleetFile,
      hosts,
      key,
      releaseKey,
    })),
  ];
}
