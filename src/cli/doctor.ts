// `nixship doctor`: checks what a deploy needs, and prints the exact fix for each problem.
import { access } from "node:fs/promises";
import { serveStoreWhileRunning } from "../cache/serve.js";
import { checkBuilders } from "../doctor/builder-checks.js";
import { blocksDeploy, type Check, fail, skip, warn } from "../doctor/check.js";
import { checkFleet, type GivenKey } from "../doctor/fleet-checks.js";
import { judgeNix, probeNix } from "../doctor/local-nix.js";
import {
  configuredSubstituters,
  judgeSubstituters,
  probeSubstituters,
  SUBSTITUTER_PROBE_MS,
} from "../doctor/substituters.js";
import { InputError, NixshipError, UsageError } from "../errors.js";
import { DEFAULT_FLEET_OUTPUT } from "../fleet/load-flake-fleet.js";
import { DEFAULT_FLEET_FILE } from "../fleet/load-fleet.js";
import { selectHosts } from "../fleet/select.js";
import { openStore } from "../store/url.js";
import { formatDoctorReport } from "../ui/doctor-report.js";
import { parseListen } from "../util/listen-address.js";
import { type CliIO, type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { FLEET_FLAGS, FLEET_HELP, fleetHere, readFleetInput } from "./fleet-input.js";
import { readSecretKeyFile, releaseKeySource } from "./keys-input.js";
import { openMetrics } from "./prometheus-input.js";
import { systemFault } from "./system-faults.js";

export const doctorCommand: Command = {
  path: ["doctor"],
  summary:
    "check Nix, ssh, keys, the fleet, its cache and its hosts; print the fix for each problem",
  help: `Usage: nixship doctor [--fleet FILE] [--on SELECTOR] [--key SECRET_FILE]
                      [--release-key SECRET_FILE] [--serve-cache HOST:PORT] [--json]

Checks, and for each problem prints the exact fix:
  nix     the local Nix: version, experimental features (nix-command, flakes), that a
          trivial derivation builds (build users and sandbox, named when they are why not),
          and that each of its substituters answers (all asked at once, within
          ${SUBSTITUTER_PROBE_MS / 1000} s: Nix asks them before every build)
  fleet   the fleet (a fleet file, or the flake's output) parses
  keys    --key parses, is mode 0600 and its public half is in cache.publicKeys; the same
          for --release-key ($NIXSHIP_RELEASE_KEY) and releases.publicKeys (agent hosts)
  cache   the cache is reachable and holds a binary cache (nix-cache-info); with agent
          hosts, that the store honours conditional writes (probe objects, then removed)
  ssh     the ssh client, the fleet's known_hosts and ssh_config
  host    each selected ssh host: a new ssh connection (host key checked), its 'sh -s'
          answering as a deploy's script needs (20 s for the whole probe), Nix present,
          /nix/store writable, and that it fetches the nix-cache-info of the cache it would
          substitute from (with curl, within 5 s): with --serve-cache, the fleet's cache
          served on HOST:PORT while doctor runs, as deploy --serve-cache serves it; else an
          HTTP cache.substituter
  ssm     a region for SSM hosts
  prometheus  the fleet's prometheus answers a query (with its bearer token), and each
          query of the selected hosts' analysis answers a value for each of them (at most
          50 hosts a query): no data fails under noData fail, and warns under wait
  builder each of build.builders (and build.host): a new ssh connection (host key checked
          against the entry's PUBLIC_HOST_KEY, else ssh.knownHosts), its Nix version,
          nix-daemon for ssh-ng://, its own system; then that every system the selected
          hosts need (evaluated, not built) is served by a builder that answered, or by the
          deployer (unless build.maxJobs is 0)

Without a fleet file only the local Nix is checked.

Options:
${FLEET_HELP}
  --key FILE         the cache signing key deploys will use
  --release-key FILE the release signing key (default: $NIXSHIP_RELEASE_KEY)
  --serve-cache H:P  serve the fleet's cache on H:P (port 0: any free one) while checking
                     the hosts, and check each reaches it (for a lab: "$(nixship lab address):0")

Exit codes: 0 nothing blocks a deploy (warnings may be printed), 1 something does,
2 bad usage.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...FLEET_FLAGS,
        key: { type: "string" },
        "release-key": { type: "string" },
        "serve-cache": { type: "string" },
      },
      "doctor",
    );
    refuseArguments(positionals, "doctor");
    const nix = await probeNix(io.env);
    const checks: Check[] = judgeNix(nix);
    const substituters = configuredSubstituters(nix.config);
    if (substituters !== undefined) {
      checks.push(...judgeSubstituters(await probeSubstituters(substituters)));
    }
    checks.push(...(await fleetChecks(values, io, nix.config)));
    if (values.json) writeJson(io, { ok: !blocksDeploy(checks), checks });
    else io.stdout.write(formatDoctorReport(checks));
    return blocksDeploy(checks) ? 1 : 0;
  },
};

async function fleetChecks(
  values: {
    fleet?: string;
    on?: string;
    key?: string;
    "release-key"?: string;
    "serve-cache"?: string;
  },
  io: CliIO,
  nixConfig: ReadonlyMap<string, string>,
): Promise<Check[]> {
  const { env } = io;
  const named = values.fleet ?? env.NIXSHIP_FLEET;
  const exists = (file: string) =>
    access(file).then(
      () => true,
      () => false,
    );
  const none = `none given and no ./${DEFAULT_FLEET_FILE}`;
  // (An empty --fleet is refused below, with the other faults of the fleet named.)
  if (!named && values.fleet === undefined && fleetHere() === undefined) {
    const own = (await exists("flake.nix")) ? ` (the flake here is nixship's own)` : "";
    return [skip("fleet", "fleet file", `${none}${own}: only the local Nix was checked`)];
  }
  let input: Awaited<ReturnType<typeof readFleetInput>>;
  try {
    input = await readFleetInput(values, io, "doctor");
  } catch (err) {
    // A fleet that cannot be read (a bad file, a flake the local Nix cannot evaluate, a Nix
    // too old to ask) is one failed check: the others are still shown, the local Nix's first.
    if (!(err instanceof NixshipError) || err instanceof UsageError) throw err;
    // The flake here, looked at for want of a fleet file, need not hold a fleet.
    if (!named && err instanceof InputError && err.code === "fleet-output-missing") {
      return [
        skip(
          "fleet",
          "fleet file",
          `${none}, and the flake here has no output "${DEFAULT_FLEET_OUTPUT}": only the local Nix was checked`,
        ),
      ];
    }
    // Looked for in the flake here, for want of a fleet file: a flake that cannot be evaluated
    // at all (its inputs out of reach, a Nix too old) may hold no fleet, so it is said, not
    // failed; an error in its fleet output is the fleet's, and fails.
    const flakeUnread = !(err instanceof InputError) || err.code === "flake-eval-failed";
    if (!named && flakeUnread && !(await exists(DEFAULT_FLEET_FILE))) {
      return [
        warn(
          "fleet",
          "fleet file",
          `${none}, and the flake here could not be evaluated to look for its "${DEFAULT_FLEET_OUTPUT}" output: ${err.message}`,
          `name the fleet with --fleet (or $NIXSHIP_FLEET); if this flake holds it, ${err.hint ?? "fix the flake as the message says"}`,
        ),
      ];
    }
    return [
      fail(
        "fleet",
        "fleet file",
        err.message,
        err.hint ?? "fix what the message names, in the file it names",
      ),
    ];
  }
  const keys: Check[] = [];
  const readKey = async (
    given: { readonly file: string; readonly name: string } | undefined,
    name: string,
  ): Promise<GivenKey | undefined> => {
    if (given === undefined) return undefined;
    try {
      return await readSecretKeyFile(given.file, given.name);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      keys.push(fail("keys", name, err.message, err.hint ?? "fix the key file"));
      return "unreadable";
    }
  };
  const key = await readKey(
    values.key === undefined ? undefined : { file: values.key, name: "--key" },
    "cache signing key",
  );
  const releaseKey = await readKey(releaseKeySource(values["release-key"], env), "release key");
  const hosts = selectHosts(input.fleet, values.on);
  const serve = values["serve-cache"];
  const served =
    serve === undefined ? undefined : await serveForHosts(input.fleet.cache?.url, serve);
  if (served?.failed !== undefined) keys.push(served.failed);
  const metrics = await openMetrics(input.fleet).catch((err: unknown) => {
    if (!(err instanceof NixshipError)) throw err;
    return { unreadable: err.message, ...(err.hint === undefined ? {} : { hint: err.hint }) };
  });
  try {
    return [
      ...keys,
      ...(await checkFleet({
        fleet: input.fleet,
        fleetFile: input.fleetFile,
        hosts,
        key,
        releaseKey,
        ...(served?.url === undefined ? {} : { served: served.url }),
        ...(metrics === undefined ? {} : { metrics }),
      })),
      ...(await checkBuilders({
        fleet: input.fleet,
        fleetDir: input.fleetDir,
        hosts,
        localConfig: nixConfig,
      })),
    ];
  } finally {
    await served?.close();
  }
}

/**
 * The fleet's cache served on `listen` (as deploy --serve-cache serves it) while the hosts are
 * checked; a cache that cannot be served there is a failed check.
 */
async function serveForHosts(
  cacheUrl: string | undefined,
  listen: string,
): Promise<{ url?: string; failed?: Check; close: () => Promise<void> }> {
  const { host, port } = parseListen(listen, "doctor: --serve-cache");
  const nothing = async () => {};
  if (cacheUrl === undefined) {
    throw new UsageError("doctor: --serve-cache needs a cache in the fleet file");
  }
  const store = await openStore(cacheUrl);
  try {
    return await serveStoreWhileRunning(store, host, port);
  } catch (err) {
    await store.close();
    const fault = systemFault(err);
    return {
      failed: fail(
        "cache",
        "serve-cache",
        `cannot serve the cache on ${listen}: ${(err as Error).message}`,
        fault?.hint ?? "give --serve-cache an address of this machine the hosts can reach",
      ),
      close: nothing,
    };
  }
}
