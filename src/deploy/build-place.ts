// Where the deployer's builds run, from the fleet's `build` section and `--build-host`: Nix's
// remote builders (a machines file read and checked here), or one build host's store over
// ssh-ng://; either way ssh checks host keys against the fleet's known_hosts and ssh_config,
// handed to Nix as an ssh_config file of nixship's own (NIX_SSHOPTS).
import type { BuildPlace } from "../cache/nix-build.js";
import { nixSshOpts } from "../delivery/ssh-config-for-nix.js";
import { type SshTarget, sshArgs } from "../delivery/ssh-transport.js";
import { InputError, UsageError } from "../errors.js";
import { type BuilderMachine, formatBuilders, parseBuilderEntries } from "../fleet/builders.js";
import { BUILD_HOST_PATTERN, type Fleet, sshDestination, sshUserOf } from "../fleet/fleet.js";
import { readFileBounded } from "../util/bounded-file.js";

/** The largest machines file read: far more than any list of builders. */
const MACHINES_FILE_LIMIT = 1024 * 1024;

export interface ResolvedBuildPlace {
  readonly place: BuildPlace;
  /** The remote builders the build may use. */
  readonly builders: readonly BuilderMachine[];
  /** The build host's store (`ssh-ng://[USER@]HOST`), when the systems are built there. */
  readonly host: string | undefined;
  /** The build host as ssh reaches it (the same destination, config and known_hosts). */
  readonly hostSsh: SshTarget | undefined;
}

/** The place of the fleet's builds; `buildHost` (`--build-host`) wins over `build.host`. */
export async function resolveBuildPlace(
  fleet: Fleet,
  buildHost?: string,
): Promise<ResolvedBuildPlace> {
  const { build } = fleet;
  const hostName = buildHost ?? build.host;
  if (buildHost !== undefined && !BUILD_HOST_PATTERN.test(buildHost)) {
    throw new UsageError(
      `--build-host must be [USER@]HOST or a fleet host's name (got ${JSON.stringify(buildHost.slice(0, 80))})`,
    );
  }
  const destination = hostName === undefined ? undefined : buildHostDestination(fleet, hostName);
  const host = destination === undefined ? undefined : `ssh-ng://${destination}`;
  const hostSsh: SshTarget | undefined =
    destination === undefined
      ? undefined
      : {
          name: host as string,
          destination,
          user: undefined,
          configFile: fleet.ssh.configFile,
          knownHosts: fleet.ssh.knownHosts,
        };
  // A build host builds everything in its own store, with its own builders.
  const builders = host === undefined ? await readBuilders(fleet) : [];
  const maxJobs = build.maxJobs === undefined ? {} : { maxJobs: build.maxJobs };
  if (host === undefined && builders.length === 0) {
    return { place: maxJobs, builders, host, hostSsh };
  }
  const sshOpts = await builderSshOpts(fleet);
  const place: BuildPlace = {
    ...maxJobs,
    sshOpts,
    ...(builders.length === 0 ? {} : { builders: formatBuilders(builders) }),
  };
  return { place, builders, host, hostSsh };
}

/**
 * The ssh destination of build host `name` (`[USER@]HOST`): a fleet host's name stands for its
 * ssh destination, as its ssh user; anything else is taken as it is.
 */
function buildHostDestination(fleet: Fleet, name: string): string {
  const host = fleet.hosts.find((h) => h.name === name);
  if (host?.delivery !== "ssh") return name;
  return `${sshUserOf(fleet.ssh, host)}@${sshDestination(host)}`;
}

/** The store of build host `name`: `ssh-ng://` and its destination. */
export function buildHostStore(fleet: Fleet, name: string): string {
  return `ssh-ng://${buildHostDestination(fleet, name)}`;
}

/** The fleet's builders: its own entries, or its machines file's, read and checked now. */
export async function readBuilders(fleet: Fleet): Promise<BuilderMachine[]> {
  const spec = fleet.build.builders;
  if (spec === undefined) return [];
  if (spec.kind === "machines") return [...spec.machines];
  const bytes = await readFileBounded(spec.path, MACHINES_FILE_LIMIT, (size) => {
    return new InputError(
      "bad-machines-file",
      `${spec.path} (build.builders) is ${size} bytes; a machines file is read up to ${MACHINES_FILE_LIMIT}`,
      { hint: "name the right file in build.builders" },
    );
  });
  if (bytes === undefined) {
    throw new InputError("machines-file-missing", `${spec.path} (build.builders) does not exist`, {
      hint: "write the machines file (one builder a line, in Nix's builders syntax), or fix build.builders",
    });
  }
  const parsed = parseBuilderEntries(bytes.toString("utf8"), { comments: true });
  if (parsed.problems.length > 0) {
    throw new InputError(
      "bad-machines-file",
      parsed.problems.map((p) => `${spec.path} (build.builders): ${p}`).join("\n"),
      {
        hint: "each line: URI SYSTEMS SSH_KEY MAX_JOBS SPEED FEATURES MANDATORY PUBLIC_HOST_KEY ('-' for a default), URI ssh:// or ssh-ng://",
      },
    );
  }
  return parsed.machines;
}

/**
 * NIX_SSHOPTS for builders and build hosts: the fleet's ssh_config and known_hosts, host keys
 * checked strictly, no prompt, a connection of its own (no shared master left behind). The
 * user and identity come from the builder's entry or the ssh_config, never from ssh.user.
 */
export function builderSshOpts(fleet: Fleet): Promise<string> {
  const args = sshArgs(
    {
      name: "builders",
      destination: "builder",
      user: undefined,
      configFile: fleet.ssh.configFile,
      knownHosts: fleet.ssh.knownHosts,
    },
    { fresh: true },
  );
  return nixSshOpts(args.slice(0, -1));
}
