// A build that failed because of another machine: the error names the builder and what failed
// on it (unreachable, host key refused, no Nix, the build itself), with the lines that say why,
// instead of Nix's whole output.
import { OperationError } from "../errors.js";
import type { BuilderFailure, BuilderFailureKind } from "./build-log.js";

const WHAT: Record<BuilderFailureKind, string> = {
  unreachable: "cannot be reached",
  "host-key": "refused: its host key is not the one known for it",
  auth: "refused the login",
  "nix-missing": "has no Nix the deployer can run there (nix-daemon or nix-store not found)",
  connection: "did not open a Nix connection",
  "build-failed": "failed to build",
};

const HINT: Record<BuilderFailureKind, string> = {
  unreachable:
    "check that the builder is up, sshd runs and the address in build.builders (or --build-host) is right; 'nixship doctor' checks each builder",
  "host-key":
    "check the builder's key out of band, then put it in ssh.knownHosts (or the entry's PUBLIC_HOST_KEY, base64 of its ssh_host_ed25519_key.pub)",
  auth: "authorise the deployer's ssh key for that user on the builder (the entry's SSH_KEY, or ssh.configFile's IdentityFile)",
  "nix-missing":
    "install Nix on the builder, with nix-daemon (ssh-ng://) or nix-store (ssh://) on the PATH of a non-interactive ssh login",
  connection: "run 'nixship doctor' to check the builder, or ssh to it by hand with -v",
  "build-failed":
    "the derivation failed on the builder: its log's end is above ('nix log DRV' on the builder has all of it)",
};

/** A build that failed on another machine. */
export class BuilderError extends OperationError {
  constructor(
    readonly failure: BuilderFailure,
    /** Other builders that failed in the same build, named after the first. */
    readonly others: readonly BuilderFailure[] = [],
  ) {
    const what =
      failure.kind === "build-failed" && failure.drv !== undefined
        ? `failed to build ${failure.drv}`
        : WHAT[failure.kind];
    const more =
      others.length === 0
        ? ""
        : `\nalso: ${others.map((o) => `${o.builder} ${WHAT[o.kind]}`).join("; ")}`;
    super(
      `builder-${failure.kind}`,
      `builder ${failure.builder} ${what}${formatSaid(failure.said)}${more}`,
      { hint: HINT[failure.kind] },
    );
  }
}

/** The first failure of a build, with the others of other builders. */
export function builderError(failures: readonly BuilderFailure[]): BuilderError | undefined {
  const [first, ...rest] = failures;
  if (first === undefined) return undefined;
  const others = rest.filter((f) => f.builder !== first.builder);
  return new BuilderError(first, others);
}

function formatSaid(said: readonly string[]): string {
  return said.length === 0 ? "" : `:\n${said.map((l) => `  ${l}`).join("\n")}`;
}
