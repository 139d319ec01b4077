// `nixship doctor`'s builders: each remote builder (build.builders) and the build host
// (build.host), probed over a new ssh connection with host keys checked as Nix will check them
// (its entry's PUBLIC_HOST_KEY, else the fleet's known_hosts), for its Nix, nix-daemon (what
// ssh-ng:// runs) and its own system; then whether every system the selected hosts need is
// served by a builder that answered, or by the deployer itself; and, for the build host, which
// way its closures reach the cache (pushed from there by its nixship, or copied back).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type SshTarget, sshArgs } from "../delivery/ssh-transport.js";
import { neededSystemTypes } from "../deploy/build.js";
import { probeBuildHost } from "../deploy/build-host-push.js";
import { buildHostStore, readBuilders } from "../deploy/build-place.js";
import { NixshipError } from "../errors.js";
import {
  type BuilderMachine,
  builderAddress,
  decodeHostKey,
  servesSystem,
} from "../fleet/builders.js";
import type { Fleet, FleetHost } from "../fleet/fleet.js";
import { mapLimit } from "../util/pool.js";
import { runCommand } from "../util/run.js";
import { type Check, fail, ok, skip, warn } from "./check.js";
import { sshFix } from "./fleet-checks.js";
import { judgeNixVersion } from "./local-nix.js";

/** Seconds one builder's probe may take, and the evaluation of the systems needed. */
const BUILDER_TIMEOUT = 20;
const EVAL_TIMEOUT = 120;
const BUILDER_JOBS = 8;
/** What a builder says of itself, one `key=value` a line. */
const PROBE = [
  'printf "nix=%s\\n" "$(nix-store --version 2>/dev/null | head -n 1)"',
  'printf "daemon=%s\\n" "$(command -v nix-daemon 2>/dev/null)"',
  'printf "system=%s\\n" "$(nix-instantiate --eval --expr builtins.currentSystem 2>/dev/null | tr -d \'"\')"',
].join("; ");

export interface BuilderCheckInput {
  readonly fleet: Fleet;
  readonly fleetDir: string;
  readonly hosts: readonly FleetHost[];
  /** The deployer's Nix settings (`system`, `extra-platforms`, from doctor's probe). */
  readonly localConfig: ReadonlyMap<string, string>;
}

/** What one builder answered. */
interface Probed {
  readonly machine: BuilderMachine;
  readonly checks: Check[];
  /** Its own system, when it answered with a Nix. */
  readonly system: string | undefined;
}

export async function checkBuilders(input: BuilderCheckInput): Promise<Check[]> {
  const { fleet } = input;
  if (fleet.build.builders === undefined && fleet.build.host === undefined) return [];
  let machines: BuilderMachine[];
  try {
    machines = await readBuilders(fleet);
  } catch (err) {
    if (!(err instanceof NixshipError)) throw err;
    return [fail("builders", "builders", err.message, err.hint ?? "fix build.builders")];
  }
  const buildHost =
    fleet.build.host === undefined ? undefined : hostMachine(fleet, fleet.build.host);
  const all = buildHost === undefined ? machines : [buildHost];
  const probed = await mapLimit(all, BUILDER_JOBS, (m) => probeBuilder(fleet, m));
  const push =
    buildHost === undefined || probed[0]?.system === undefined
      ? []
      : [await checkBuildHostPush(fleet, buildHost)];
  return [
    ...probed.flatMap((p) => p.checks),
    ...push,
    ...(await checkSystems(input, probed, buildHost)),
  ];
}

/**
 * How a deploy's closures built on the build host reach the cache: pushed from there by its
 * nixship (deploy/build-host-push.ts), or copied back here, and why. Either is a working setup.
 */
async function checkBuildHostPush(fleet: Fleet, machine: BuilderMachine): Promise<Check> {
  const area = `builder ${machine.uri}`;
  if (fleet.cache !== undefined && !fleet.cache.url.startsWith("s3://")) {
    return ok(
      area,
      "push",
      `closures are copied back to the deployer: the cache ${fleet.cache.url} is not an object store ${machine.uri} can write`,
    );
  }
  const { user, host } = builderAddress(machine.uri);
  const found = await probeBuildHost({
    name: machine.uri,
    destination: user === undefined ? host : `${user}@${host}`,
    user: undefined,
    configFile: fleet.ssh.configFile,
    knownHosts: fleet.ssh.knownHosts,
  });
  return found.kind === "nixship"
    ? ok(
        area,
        "push",
        `nixship ${found.version} (${found.command}) pushes the NARs from there; the deployer signs`,
      )
    : ok(area, "push", `closures are copied back to the deployer: ${found.why}`);
}

/** The build host as a builder of its own system (which the probe reads). */
function hostMachine(fleet: Fleet, name: string): BuilderMachine {
  return {
    uri: buildHostStore(fleet, name),
    systems: undefined,
    sshKey: undefined,
    maxJobs: 1,
    speedFactor: 1,
    supportedFeatures: [],
    mandatoryFeatures: [],
    publicHostKey: undefined,
  };
}

async function probeBuilder(fleet: Fleet, machine: BuilderMachine): Promise<Probed> {
  const area = `builder ${machine.uri}`;
  const { user, host } = builderAddress(machine.uri);
  // Nix writes an entry's host key to a known_hosts file of its own, for the host as named.
  const keyLine = machine.publicHostKey && decodeHostKey(machine.publicHostKey);
  const dir = keyLine ? await mkdtemp(join(tmpdir(), "nixship-builder-")) : undefined;
  try {
    let knownHosts = fleet.ssh.knownHosts;
    if (dir !== undefined && keyLine) {
      knownHosts = join(dir, "known_hosts");
      await writeFile(knownHosts, `${host} ${keyLine}\n`, { mode: 0o600 });
    }
    const target: SshTarget = {
      name: machine.uri,
      destination: host,
      user,
      configFile: fleet.ssh.configFile,
      knownHosts,
    };
    const args = sshArgs(target, { fresh: true });
    const identity = machine.sshKey ? ["-i", machine.sshKey, "-o", "IdentitiesOnly=yes"] : [];
    const r = await runCommand(
      "ssh",
      [...args.slice(0, -1), ...identity, ...args.slice(-1), PROBE],
      {
        okCodes: [0, 255],
        signal: AbortSignal.timeout(BUILDER_TIMEOUT * 1000),
      },
    ).catch((err: Error) => ({ code: 255, stdout: "", stderr: err.message }));
    if (r.code !== 0) {
      const said =
        r.stderr.trim().split(/\r?\n/).filter(Boolean).at(-1) ?? `ssh exited with ${r.code}`;
      return {
        machine,
        checks: [
          fail(
            area,
            "ssh",
            said,
            // The entry's own key is written to a file of this probe's, gone once it ends.
            sshFix(
              said,
              target,
              keyLine
                ? `its PUBLIC_HOST_KEY in build.builders (base64 of the host's key line)`
                : undefined,
            ),
          ),
        ],
        system: undefined,
      };
    }
    return judgeProbe(area, machine, r.stdout);
  } finally {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }
}

function judgeProbe(area: string, machine: BuilderMachine, stdout: string): Probed {
  const facts = new Map(
    stdout.split("\n").flatMap((l) => {
      const eq = l.indexOf("=");
      return eq > 0 ? [[l.slice(0, eq), l.slice(eq + 1).trim()] as const] : [];
    }),
  );
  const nix = facts.get("nix") ?? "";
  const system = facts.get("system") || undefined;
  const checks: Check[] = [ok(area, "ssh", "a new connection works (host key checked)")];
  if (nix === "") {
    checks.push(
      fail(
        area,
        "nix",
        "nix-store is not on the PATH of a non-interactive ssh login",
        "install Nix on the builder",
      ),
    );
    return { machine, checks, system: undefined };
  }
  checks.push(judgeNixVersion(area, nix, area));
  if (machine.uri.startsWith("ssh-ng://")) {
    const daemon = facts.get("daemon") ?? "";
    checks.push(
      daemon === ""
        ? fail(
            area,
            "nix-daemon",
            "nix-daemon is not on the PATH of a non-interactive ssh login: ssh-ng:// runs 'nix-daemon --stdio'",
            "put nix-daemon on that PATH, or use ssh:// (nix-store --serve) for this builder",
          )
        : ok(area, "nix-daemon", daemon),
    );
  }
  if (system !== undefined && machine.systems !== undefined && !machine.systems.includes(system)) {
    checks.push(
      warn(
        area,
        "systems",
        `its entry says ${machine.systems.join(",")}, but its Nix builds for ${system}`,
        "list the systems it builds for in its entry (others need emulation configured on it)",
      ),
    );
  } else if (system !== undefined) {
    checks.push(
      ok(area, "systems", `${(machine.systems ?? [system]).join(",")} (its own: ${system})`),
    );
  }
  return { machine, checks, system };
}

/** Whether each system the selected hosts need has somewhere to be built. */
async function checkSystems(
  input: BuilderCheckInput,
  probed: readonly Probed[],
  buildHost: BuilderMachine | undefined,
): Promise<Check[]> {
  let needed: Map<string, string[]>;
  try {
    needed = await neededSystemTypes(
      input.hosts,
      input.fleetDir,
      AbortSignal.timeout(EVAL_TIMEOUT * 1000),
    );
  } catch (err) {
    if (!(err instanceof NixshipError)) throw err;
    return [
      skip(
        "builders",
        "systems",
        `cannot tell the systems the hosts need: ${err.message.split("\n")[0]}`,
      ),
    ];
  }
  const local = input.localConfig.get("system") ?? "";
  const localTypes = [local, ...(input.localConfig.get("extra-platforms") ?? "").split(/\s+/)];
  const buildsHere = buildHost === undefined && input.fleet.build.maxJobs !== 0;
  const answered = probed.filter((p) => p.system !== undefined);
  return [...needed].map(([system, hosts]) => {
    const by = answered
      .filter((p) =>
        buildHost !== undefined ? p.system === system : servesSystem(p.machine, system, local),
      )
      .map((p) => p.machine.uri);
    const here = buildsHere && localTypes.includes(system) ? ["the deployer"] : [];
    const servers = [...by, ...here];
    const what = `${system} (for ${hosts.join(", ")})`;
    if (servers.length > 0)
      return ok("builders", `system ${system}`, `${what}: built by ${servers.join(", ")}`);
    return fail(
      "builders",
      `system ${system}`,
      `${what}: no builder that answered serves it${buildsHere ? ", and the deployer cannot build it" : ""}`,
      buildHost !== undefined
        ? `build on a host of that system (build.host, --build-host)`
        : `add a builder for ${system} to build.builders (or bring the one listed up)`,
    );
  });
}
