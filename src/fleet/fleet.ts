// The fleet's domain types: hosts, how each is reached, what it should run, and the rollout
// policy. `fleet-file.ts` builds these from `nixship.json`; everything else reads them.
import type { StorePath } from "../nix/store-path.js";
import type { AnalysisQuery, BakePolicy } from "./bake.js";
import type { BuildersSpec } from "./builders.js";
import type { PausePolicy } from "./pause-policy.js";

/** Host names and tags: what `--on web1,@web` selects by. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]*$/;
export const NAME_MAX_LENGTH = 63;
/** A hostname, IPv4 or IPv6 literal; never starts with "-", so it cannot pass as an option. */
export const ADDRESS_PATTERN = /^[A-Za-z0-9:][A-Za-z0-9.:-]*$/;
/** A DNS name's longest. */
export const ADDRESS_MAX_LENGTH = 253;
/**
 * The address `nixship init` writes for a host it knows no address of: no address (the
 * pattern refuses it), so the fleet is refused, naming the host, until the user fills it in.
 */
export const ADDRESS_PLACEHOLDER = "FILL IN: the host's address";
/** The admin `init --from` writes where the other tool had none: a person fills it in. */
export const ADMIN_PLACEHOLDER = "FILL IN: an admin's age recipient (age1… or ssh-ed25519 …)";
/** An ssh destination or ssh_config `Host` alias. */
export const SSH_HOST_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
export const SSH_USER_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
export const INSTANCE_ID_PATTERN = /^i-[0-9a-f]{8,17}$/;
/** A flake installable such as `.#web` or `path:./examples#web-v1`: no spaces, no leading "-". */
export const FLAKE_INSTALLABLE_PATTERN = /^[^\s#-]\S*#\S+$/;

export const DELIVERY_MODES = ["ssh", "ssm", "agent"] as const;
export type DeliveryMode = (typeof DELIVERY_MODES)[number];

/** What a host should run: a store path as is, or a flake output the deployer builds. */
export type SystemSpec =
  | { readonly kind: "store-path"; readonly path: StorePath }
  | { readonly kind: "flake"; readonly installable: string };

interface HostCommon {
  readonly name: string;
  readonly tags: readonly string[];
  /** Where health checks reach the host (`{address}`); for ssh, also the fallback destination. */
  readonly address: string | undefined;
  readonly system: SystemSpec;
  /**
   * The host's SSH host ed25519 public key (`ssh-ed25519 AAAA…`), which its secrets are
   * encrypted to. ssh hosts may leave it out: their key is read from the fleet's known_hosts.
   */
  readonly hostKey?: string | undefined;
}

export interface SshHost extends HostCommon {
  readonly delivery: "ssh";
  /** The ssh destination when it differs from `address` (e.g. an ssh_config alias). */
  readonly sshHost: string | undefined;
  /** The host's own `ssh.sudo`; undefined: the fleet's. */
  readonly sudo?: boolean | undefined;
  /** The user ssh logs in as on this host; undefined: the fleet's `ssh.user`. */
  readonly sshUser?: string | undefined;
}

/** An SSM Run Command target (`tag:Role` = `web`, …): every instance it matches. */
export interface SsmTarget {
  /** `tag:NAME`, `tag-key`, `resource-groups:Name` or another SendCommand target key. */
  readonly key: string;
  readonly values: readonly string[];
}

/** Reached through AWS SSM Run Command: one instance by ID, or every instance of the targets. */
export interface SsmHost extends HostCommon {
  readonly delivery: "ssm";
  readonly instanceId: string | undefined;
  /** Set exactly when `instanceId` is not. */
  readonly targets: readonly SsmTarget[] | undefined;
}

export interface AgentHost extends HostCommon {
  readonly delivery: "agent";
}

export type FleetHost = SshHost | SsmHost | AgentHost;

export interface CacheSettings {
  /** A store URL (`file:///dir`, `/dir`, `s3://bucket/prefix?…`), kept as written. */
  readonly url: string;
  /** `name:base64` keys the hosts trust for this cache. */
  readonly publicKeys: readonly string[];
  /** A URL the hosts substitute from; undefined: the deployer copies closures over SSH. */
  readonly substituter: string | undefined;
}

/** Signed releases, which agent hosts follow. */
export interface ReleaseSettings {
  /** The channel the fleet's agents follow (`channels/<channel>.json` in the cache's store). */
  readonly channel: string;
  /** `name:base64` release keys the agents trust. */
  readonly publicKeys: readonly string[];
  /** Seconds the deployer waits for an agent to report before counting it offline. */
  readonly offlineTimeout: number;
  /**
   * Seconds a release stays valid after it is signed (its `expires`): agents refuse an expired
   * one, so a channel frozen on an old release stops being followed. `release refresh` renews.
   */
  readonly maxAge: number;
  /**
   * Whether an agent host whose SSH host key the fleet knows (its `hostKey`, or its pin) is
   * believed only on reports that key signed (status/report-signature.ts). Off in fleets that
   * do not say: agents older than signed reports sign nothing (docs/agent.md, "Signed reports").
   */
  readonly signedReports: boolean;
}

/** AWS SSM Run Command, for ssm hosts. */
export interface SsmSettings {
  /** The Command document (from `nixship ssm document`) that runs activate.sh. */
  readonly documentName: string;
  /** Undefined: the AWS SDK's default chain decides. */
  readonly region: string | undefined;
  /** Seconds one host's activation may run before SSM stops it. */
  readonly commandTimeout: number;
}

/**
 * The default bound on the deployer's shared ssh connections: 128 masters, about 205 MB at the
 * 1.60 MB per master that bench:fleet measured, within the 500 MB the deployer may
 * take at 1,000 hosts.
 */
export const DEFAULT_MAX_CONNECTIONS = 128;
/** The bound's range ends here: more is no bound. */
export const MAX_CONNECTIONS_LIMIT = 100_000;

export interface SshSettings {
  readonly user: string;
  /**
   * Reach hosts through their installed nixship-activate: `sudo -n
   * /run/current-system/sw/bin/nixship-activate ...` as `user` (see docs/pinned-hosts.md).
   */
  readonly sudo: boolean;
  readonly configFile: string | undefined;
  readonly knownHosts: string | undefined;
  /**
   * The most shared connections (ssh masters) the deployer holds at once; hosts beyond it
   * connect again for their wave (delivery/ssh-master-pool.ts). Undefined: the default, 128.
   */
  readonly maxConnections?: number;
}

/** Where the deployer's builds run: Nix's remote builders, or one build host. */
export interface BuildSettings {
  /** Passed to every build (`--builders`); Nix routes each derivation by system and features. */
  readonly builders: BuildersSpec | undefined;
  /**
   * `[USER@]HOST` (or a fleet host's name): the systems are evaluated here and built in that
   * host's store over ssh-ng, then pushed from there by its nixship (signed here), or copied
   * back for the push.
   */
  readonly host: string | undefined;
  /** Nix's `--max-jobs` for the deployer itself: 0 builds nothing here (only on builders). */
  readonly maxJobs: number | undefined;
}

/** `build.host` and `--build-host`: `[USER@]HOST`, as ssh takes it. */
export const BUILD_HOST_PATTERN = /^(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9_][A-Za-z0-9._-]*$/;

export interface HttpCheck {
  /** May hold `{address}` and `{name}`; see `health-url.ts`. */
  readonly url: string;
  readonly expectStatus: number;
  /** Seconds. */
  readonly timeout: number;
  /**
   * false: the first failure is final (a wrong status, a refused connection), not retried
   * until the timeout; absent: true.
   */
  readonly retry?: boolean;
}

export interface CommandCheck {
  /** A shell command run on the host; exit 0 means healthy. */
  readonly run: string;
  /** Seconds. */
  readonly timeout: number;
  /** false: the first non-zero exit is final, not retried until the timeout; absent: true. */
  readonly retry?: boolean;
}

export interface HealthChecks {
  readonly http: readonly HttpCheck[];
  readonly commands: readonly CommandCheck[];
}

export interface RolloutPolicy {
  /** Most hosts in one wave (≥ 1). */
  readonly parallel: number;
  /** Failures tolerated before no new wave starts. */
  readonly maxFailures: number;
  /** Hosts in the canary wave, deployed before any other (0: no canary). */
  readonly canary: number;
  /** Seconds the host waits for the deployer's confirmation before rolling back; 0 disables. */
  readonly confirmTimeout: number;
  /**
   * Seconds an activation (realise, profile, switch) may run on a host; past it the host stops
   * the switch and goes back to its previous system.
   */
  readonly activationTimeout: number;
  /**
   * After a confirmed activation, the host keeps its newest N generations (and the rollback
   * target), removes the rest and collects garbage; 0 keeps everything.
   */
  readonly keepGenerations: number;
  /**
   * Whether a host is rebooted into its new system: never; auto, when the new system's kernel,
   * initrd or kernel modules differ from those the host booted; always, whenever it changes.
   */
  readonly reboot: RebootMode;
  /** Seconds a rebooted host has to come back (and again after a reboot back). */
  readonly rebootTimeout: number;
  /** A host that fails after its reboot is rebooted into the previous system too. */
  readonly rebootRollback: boolean;
  /**
   * A host must be reached through its installed, pinned nixship-activate (ssh with sudo, and
   * the host answers with pinned trust): the deploy refuses any other before it changes one.
   */
  readonly requirePinned: boolean;
  /**
   * Whether the host may fetch paths as deltas against paths it has (docs/deltas.md), where the
   * fleet file does not turn them off and the host has a zstd to apply them with; false: every
   * path whole.
   */
  readonly deltas: boolean;
  readonly health: HealthChecks;
  /**
   * Where the rollout stops for an operator's answer (pause-policy.ts); the rollout's alone, as
   * maxFailures. Undefined: it never pauses.
   */
  readonly pause?: PausePolicy;
  /** Once confirmed, how long the host's wave holds, measured, before the next (bake.ts). */
  readonly bake?: BakePolicy;
  /** PromQL queries, each with its condition, measured during the bake (bake.ts). */
  readonly analysis?: readonly AnalysisQuery[];
}

export const REBOOT_MODES = ["never", "auto", "always"] as const;
export type RebootMode = (typeof REBOOT_MODES)[number];

/** One secret: which hosts get it, where its ciphertext lives, and how the host keeps it. */
export interface SecretSpec {
  readonly name: string;
  /** A selector (`web1,@db`) of the hosts that get it. */
  readonly hosts: string;
  /** The age-encrypted file; relative paths are resolved against the fleet file's directory. */
  readonly file: string;
  readonly owner: string;
  readonly group: string;
  /** Octal permissions, e.g. "0400". */
  readonly mode: string;
  /** Where the host keeps the plaintext: under /run, a tmpfs. */
  readonly path: string;
}

export interface SecretsSettings {
  /** age recipients (`age1…`, `ssh-ed25519 …`) who can read, edit and rekey every secret. */
  readonly admins: readonly string[];
  /** A store path whose `bin/age` hosts decrypt with; undefined: `age` from the host's PATH. */
  readonly age: StorePath | undefined;
  /** In the order of the fleet file. */
  readonly entries: readonly SecretSpec[];
}

export interface Fleet {
  readonly cache: CacheSettings | undefined;
  /** Needed by agent hosts. */
  readonly releases: ReleaseSettings | undefined;
  readonly ssh: SshSettings;
  readonly ssm: SsmSettings;
  readonly policy: RolloutPolicy;
  /** Policy per tag and per host, laid over `policy` (host-policy.ts); in file order. */
  readonly policies: readonly PolicyRule[];
  /** In the order of the fleet file. */
  readonly hosts: readonly FleetHost[];
  readonly secrets: SecretsSettings | undefined;
  readonly build: BuildSettings;
  /**
   * Deltas between store paths (docs/deltas.md) as the fleet file sets them; undefined: it says
   * nothing, and deltas are on for the hosts whose running system has a zstd, agent hosts aside
   * (fleet/delta-tool.ts).
   */
  readonly deltas: DeltaSettings | undefined;
  /** The Prometheus the analysis of a bake asks; undefined: none (no analysis). */
  readonly prometheus?: PrometheusSettings | undefined;
}

/** The Prometheus a bake's analysis queries (its HTTP API). */
export interface PrometheusSettings {
  /** Its base URL (`http://prometheus:9090`), with no credentials in it. */
  readonly url: string;
  /** A file holding the bearer token sent with every query; undefined: none. */
  readonly bearerTokenFile: string | undefined;
  /** Seconds a query may take. */
  readonly timeout: number;
}

export const PROMETHEUS_DEFAULTS = { timeout: 10 } as const satisfies Pick<
  PrometheusSettings,
  "timeout"
>;

export type DeltaSettings =
  /** `"deltas": false`: every host fetches every path whole. */
  | { readonly on: false }
  /** `"deltas": true`, or an object: on for every host, agent hosts too. */
  | {
      readonly on: true;
      /**
       * A store path holding `bin/zstd` (1.4.5 or newer, for --patch-from) that every host
       * applies deltas with, realised from the cache like the systems and pushed with them;
       * undefined: each host's own, a zstd of the system it runs.
       */
      readonly tool: StorePath | undefined;
    };

export const POLICY_DEFAULTS = {
  parallel: 10,
  maxFailures: 0,
  canary: 1,
  confirmTimeout: 30,
  // The one default: host/activation.ts (DEFAULT_ACTIVATION_TIMEOUT) and agent/config.ts take
  // it from here; run-rollout.test.ts keeps activate.sh's own equal.
  activationTimeout: 600,
  keepGenerations: 0,
  reboot: "never",
  rebootTimeout: 600,
  rebootRollback: true,
  requirePinned: false,
  deltas: true,
} as const satisfies Omit<RolloutPolicy, "health">;

export const HTTP_CHECK_DEFAULTS = { expectStatus: 200, timeout: 5 } as const satisfies Omit<
  HttpCheck,
  "url"
>;

export const COMMAND_CHECK_DEFAULTS = { timeout: 10 } as const satisfies Omit<CommandCheck, "run">;

export const DEFAULT_SSH_USER = "root";

export const NO_BUILD_SETTINGS: BuildSettings = {
  builders: undefined,
  host: undefined,
  maxJobs: undefined,
};

/** A secret's name: a file name, so no "/" and no "..". */
export const SECRET_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const SECRET_NAME_MAX_LENGTH = 64;
export const SECRET_DEFAULTS = { owner: "root", group: "root", mode: "0400" } as const;
/** Where a secret lives on its hosts unless its `path` says otherwise. */
export const defaultSecretPath = (name: string) => `/run/keys/${name}`;
/** Where its ciphertext lives beside the fleet file unless its `file` says otherwise. */
export const defaultSecretFile = (name: string) => `secrets/${name}.age`;

/** A week: a daily `release refresh` from CI leaves six days to notice that it stopped. */
export const RELEASE_DEFAULTS = {
  offlineTimeout: 600,
  maxAge: 7 * 86400,
  signedReports: false,
} as const satisfies Pick<ReleaseSettings, "offlineTimeout" | "maxAge" | "signedReports">;
/** The longest `releases.maxAge` a fleet may set: a year. */
export const MAX_RELEASE_AGE = 366 * 86400;

export const SSM_DEFAULTS = {
  documentName: "nixship-activate",
  commandTimeout: 900,
} as const satisfies Omit<SsmSettings, "region">;

/** What `ssh` connects to for this host. */
export function sshDestination(host: SshHost): string {
  // The parser guarantees one of the two; the fallback only satisfies the type.
  return host.sshHost ?? host.address ?? host.name;
}

/** The user ssh logs in as on `host`: its own, else the fleet's. */
export function sshUserOf(ssh: Pick<SshSettings, "user">, host: SshHost): string {
  return host.sshUser ?? ssh.user;
}

/** Whether the deployer reaches `host` through its installed nixship-activate, by sudo. */
export function reachedBySudo(ssh: Pick<SshSettings, "sudo">, host: SshHost): boolean {
  return host.sudo ?? ssh.sudo;
}

/** The text of a system as the fleet file writes it. */
export function formatSystemSpec(system: SystemSpec): string {
  return system.kind === "store-path" ? system.path : system.installable;
}

/** Hosts that can only get their closure from the cache (ssm, agent), so the fleet needs one. */
export function requiresCache(host: FleetHost): boolean {
  return host.delivery === "ssm" || host.delivery === "agent";
}

/** What one `policies` entry (or the flags) sets: any policy key but `maxFailures`. */
export interface PolicyOverride {
  readonly parallel?: number;
  readonly canary?: number;
  readonly confirmTimeout?: number;
  readonly activationTimeout?: number;
  readonly keepGenerations?: number;
  readonly reboot?: RebootMode;
  readonly rebootTimeout?: number;
  readonly rebootRollback?: boolean;
  readonly requirePinned?: boolean;
  readonly deltas?: boolean;
  readonly health?: Partial<HealthChecks>;
  readonly bake?: BakePolicy;
  readonly analysis?: readonly AnalysisQuery[];
}

/** A `policies` entry: the hosts it applies to (one selector term) and what it sets. */
export interface PolicyRule {
  /** `@tag` or a host name, either with `*` globs, as written. */
  readonly selector: string;
  readonly override: PolicyOverride;
}
