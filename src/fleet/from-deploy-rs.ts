// `nixship init --from deploy-rs`: a flake's `deploy.nodes` read in one Nix evaluation, and each
// node's system profile and settings (deploy, node, profile: the profile's winning) turned into
// a fleet, each option carried over, mapped, or named as left behind with why. Pure: the command
// runs the evaluation.

import { InputError } from "../errors.js";
import type { MarkPath } from "../nix/eval-trace.js";
import { nixString } from "../nix/nix-string.js";
import { formatNixAttrPath, NIX_MARK_FUNCTION } from "./flake-fleet.js";
import { NAME_MAX_LENGTH, NAME_PATTERN, POLICY_DEFAULTS, SSH_USER_PATTERN } from "./fleet.js";
import type { JsonObject } from "./fleet-json.js";
import {
  type Conversion,
  type ForeignHost,
  noteSshOptions,
  type OptionFate,
  Report,
  refuseNodes,
  SSH_CONFIG_FILE,
  type SystemRef,
  sshConfigBlock,
  sshOptionsAsConfig,
  unshadowHosts,
  validAddress,
  validHostName,
  withSshConfig,
} from "./foreign-fleet.js";
import { nixName } from "./nix-text.js";
import { POLICY_RANGES } from "./read-policy.js";
import type { SshAlias } from "./ssh-alias.js";

const SSH_CONFIG = `${SSH_CONFIG_FILE} (beside the fleet, its ssh.configFile)`;
const SYSTEM_PROFILE = "/nix/var/nix/profiles/system";

/** Every option deploy-rs's README and interface.json list, and what nixship makes of it. */
export const DEPLOY_RS_OPTIONS = {
  hostname: { outcome: "carried", text: "hosts.NAME.address (health checks' {address} too)" },
  profiles: {
    outcome: "mapped",
    text: "the system profile is the host's system; nixship deploys NixOS systems, one a host",
  },
  "profiles.system.path": {
    outcome: "mapped",
    text: "hosts.NAME.system: the NixOS configuration it activates (activate.nixos of it), else the path itself",
  },
  "profiles.<other>": {
    outcome: "left",
    text: "nixship deploys a host's NixOS system only: home-manager and other profiles are not deployed (make them part of the system, e.g. home-manager's NixOS module)",
  },
  profilesOrder: { outcome: "left", text: "one profile a host: there is no order to keep" },
  profilePath: {
    outcome: "left",
    text: `nixship sets the system profile, ${SYSTEM_PROFILE}, only`,
  },
  sshUser: { outcome: "carried", text: "ssh.user (one user for every host) or hosts.NAME.sshUser" },
  user: {
    outcome: "mapped",
    text: "root, as nixship activates systems: with another sshUser, hosts.NAME.sudo = true, so that the host's pinned nixship-activate activates as root; only a running system that imports nixship.nixosModules.host has it: add it to the node's system and activate that once with deploy-rs (or deploy once as root) before nixship's first deploy (docs/pinned-hosts.md)",
  },
  sudo: {
    outcome: "left",
    text: "nixship runs 'sudo -n' and the host's pinned nixship-activate only (docs/pinned-hosts.md)",
  },
  interactiveSudo: {
    outcome: "left",
    text: "nixship never asks for a password: the host's sudoers rule for nixship-activate needs none (nixosModules.host)",
  },
  sshOpts: {
    outcome: "mapped",
    text: `the same settings as lines in a block of the host's own in ${SSH_CONFIG}, which hosts.NAME.sshHost names`,
  },
  fastConnection: {
    outcome: "left",
    text: "how hosts get closures is the fleet's: without cache.substituter the deployer copies each closure over ssh (as fastConnection does), with one every host substitutes from the cache",
  },
  autoRollback: {
    outcome: "carried",
    text: "nixship always puts the previous system back when an activation fails (it cannot be turned off)",
  },
  magicRollback: {
    outcome: "carried",
    text: "policy.confirmTimeout: the host waits for the deployer's confirmation over a new connection, and rolls back without it; false: confirmTimeout 0",
  },
  confirmTimeout: { outcome: "carried", text: "policies.NAME.confirmTimeout (seconds)" },
  activationTimeout: {
    outcome: "carried",
    text: "policies.NAME.activationTimeout (seconds); with magicRollback false deploy-rs never applied it, and it is left behind",
  },
  tempPath: {
    outcome: "left",
    text: "nixship's confirmation needs no directory on the host",
  },
  remoteBuild: {
    outcome: "left",
    text: "nixship builds once, on the deployer, its remote builders or one build host (build.builders, build.host: docs/builds.md), and hosts fetch from the cache",
  },
} as const satisfies Record<string, OptionFate>;

/** The generic settings, which the deploy, a node and a profile may each set. */
export const GENERIC_SETTINGS = [
  "sshUser",
  "user",
  "sudo",
  "interactiveSudo",
  "sshOpts",
  "fastConnection",
  "autoRollback",
  "magicRollback",
  "confirmTimeout",
  "activationTimeout",
  "tempPath",
  "remoteBuild",
] as const;

export interface GenericSettings {
  readonly sshUser?: string;
  readonly user?: string;
  readonly sudo?: string;
  readonly interactiveSudo?: boolean;
  readonly sshOpts?: readonly string[];
  readonly fastConnection?: boolean;
  readonly autoRollback?: boolean;
  readonly magicRollback?: boolean;
  readonly confirmTimeout?: number;
  readonly activationTimeout?: number;
  readonly tempPath?: string;
  readonly remoteBuild?: boolean;
}

export interface DeployRsProfile {
  readonly generic: GenericSettings;
  readonly profilePath: string | null;
  readonly hasPath: boolean;
  /** The NixOS configurations whose toplevel the path activates (by deploy-rs's activate.nixos). */
  readonly matches: readonly string[];
  /** Configurations looked at for it that threw as they were evaluated (none: the reading had none). */
  readonly failed?: readonly string[];
}

export interface DeployRsNode {
  readonly hostname: string | null;
  readonly generic: GenericSettings;
  readonly profilesOrder: readonly string[] | null;
  readonly profiles: Readonly<Record<string, DeployRsProfile>>;
}

export interface DeployRsDeploy {
  /** The flake has a `nixship` output already: its fleet. */
  readonly hasFleet?: boolean;
  readonly generic: GenericSettings;
  readonly nodes: Readonly<Record<string, DeployRsNode>>;
  /**
   * Configurations an earlier reading failed on and the last one left out (readDeployRsNodes),
   * and where and why they fail: no node's system profile activates them.
   */
  readonly skipped?: Readonly<Record<string, string>>;
}

/** What a reading of the flake leaves out, and where it looks first (readDeployRsNodes). */
export interface DeployRsLook {
  /** Configurations that failed to evaluate: not evaluated again. */
  readonly skip: readonly string[];
  /**
   * Nodes whose system profile failed: every configuration is evaluated before the profile, so
   * that the one it activates fails first, named.
   */
  readonly eager: readonly string[];
}

const FIRST_LOOK: DeployRsLook = { skip: [], eager: [] };

/**
 * One `nix eval --json` of the flake's `deploy`: its settings, and each node's; or
 * `{ missing = [outputs]; }`. A system profile's path is matched to the NixOS configuration
 * it activates by name (deploy-rs's activate.nixos names it `activatable-` and the toplevel's
 * name) and by what it is built from (the toplevel's path among its derivation's inputs), so
 * that the fleet deploys the configuration's toplevel, as the host runs it. Each configuration
 * looked at is evaluated under a mark of its own, before the profile (the node's own one first,
 * the others only when it is not the one): one that fails is named, not the node, and the
 * command reads the flake again without it (`look`, readDeployRsNodes).
 */
export function deployRsExpression(flake: string, look: DeployRsLook = FIRST_LOOK): string {
  const str = nixString;
  const list = (items: readonly string[]) => `[ ${items.map((s) => str(s)).join(" ")} ]`;
  return `let
  mark = ${NIX_MARK_FUNCTION};
  outputs = (builtins.getFlake ${str(flake)}).outputs;
  generic = [ ${GENERIC_SETTINGS.map((s) => str(s)).join(" ")} ];
  pick = path: s: builtins.listToAttrs (map (n: { name = n; value = mark (path ++ [ n ]) (builtins.deepSeq s.\${n} s.\${n}); })
    (builtins.filter (n: s ? \${n} && s.\${n} != null) generic));
  skip = ${list(look.skip)};
  eager = ${list(look.eager)};
  configurations = outputs.nixosConfigurations or { };
  names = builtins.filter (c: !(builtins.elem c skip)) (builtins.attrNames configurations);
  # A configuration's toplevel: its name, and its path (evaluated only when the name is the
  # profile's), each under a mark naming the configuration.
  toplevel = at: c: let
    m = mark (at ++ [ "nixosConfigurations" c ]);
    t = configurations.\${c}.config.system.build.toplevel or null;
  in {
    name = m (let n = if builtins.isAttrs t then t.name or null else null; in if builtins.isString n then n else null);
    outPath = m (if builtins.isAttrs t && t ? outPath then builtins.unsafeDiscardStringContext t.outPath else null);
  };
  escape = s: builtins.replaceStrings [ "." "+" "?" ] [ "\\\\." "\\\\+" "\\\\?" ] s;
  # Whether the profile is built from a toplevel of that path: two configurations of one
  # hostName have toplevels of one name, but not of one path.
  wraps = refs: path: builtins.length (builtins.split (escape path) refs) > 1;
  # The configurations the node's system profile activates: its own first, the others only
  # when it is not the one (another, broken say, is then not evaluated). The profile is
  # evaluated whole, under the node's mark: a configuration that throws is then not the one,
  # and is named in failed. For an eager node every configuration is evaluated first, whole,
  # and nothing is caught: the one the profile activates fails before it, named.
  systemMatch = node: path: let
    at = [ "deploy" "nodes" node "profiles" "system" "path" ];
    isEager = builtins.elem node eager;
    lookAt = c: let f = toplevel at c; n = builtins.tryEval f.name; o = builtins.tryEval f.outPath; in
      if isEager then f // { nameThrew = false; pathThrew = false; }
      else {
        name = if n.success then n.value else null;
        outPath = if o.success then o.value else null;
        nameThrew = !n.success;
        pathThrew = !o.success;
      };
    facts = builtins.listToAttrs (map (c: { name = c; value = lookAt c; }) names);
    own = builtins.filter (c: c == node) names;
    first = if isEager then map (c: [ facts.\${c}.name facts.\${c}.outPath ]) names
      else map (c: facts.\${c}.name) own;
    profileName = builtins.deepSeq first (mark at (let n = if builtins.isAttrs path then path.name or null else null; in
      if builtins.isString n then n else null));
    nameIs = c: facts.\${c}.name != null && "activatable-\${facts.\${c}.name}" == profileName;
    ownPath = map (c: if nameIs c then facts.\${c}.outPath else null) own;
    refs = builtins.deepSeq ownPath (mark at (builtins.unsafeDiscardStringContext
      (builtins.toJSON (if builtins.isAttrs path then path.drvAttrs or { } else { }))));
    is = c: nameIs c && facts.\${c}.outPath != null && wraps refs facts.\${c}.outPath;
    mine = own != [ ] && is node;
    looked = if mine || profileName == null then own else names;
  in builtins.seq profileName (builtins.seq refs {
    matches = if profileName == null then [ ] else if mine then [ node ] else builtins.filter is names;
    failed = builtins.filter (c: facts.\${c}.nameThrew || (nameIs c && facts.\${c}.pathThrew)) looked;
  });
  profileOf = node: at: name: p: mark at ({
    generic = pick at p;
    profilePath = mark (at ++ [ "profilePath" ]) (p.profilePath or null);
    hasPath = p ? path;
  } // (if name == "system" && p ? path then systemMatch node p.path else { matches = [ ]; failed = [ ]; }));
  nodeOf = name: n: let at = [ "deploy" "nodes" name ]; in mark at {
    hostname = mark (at ++ [ "hostname" ]) (n.hostname or null);
    generic = pick at n;
    profilesOrder = mark (at ++ [ "profilesOrder" ]) (n.profilesOrder or null);
    profiles = builtins.mapAttrs (p: profileOf name (at ++ [ "profiles" p ]) p) (mark (at ++ [ "profiles" ]) (n.profiles or { }));
  };
in
  if !(outputs ? deploy) then { missing = builtins.attrNames outputs; }
  else {
    hasFleet = outputs ? nixship;
    generic = pick [ "deploy" ] outputs.deploy;
    nodes = builtins.mapAttrs nodeOf (mark [ "deploy" "nodes" ] (outputs.deploy.nodes or { }));
  }`;
}

/** A failed reading of the flake (deployRsExpression), as the command read Nix's error. */
export interface DeployRsEvalFailure {
  readonly kind: "failed";
  /** The deepest mark it failed under. */
  readonly path: MarkPath | undefined;
  /** Where the error is (file:line:column, else the flake.nix): two failures alike are one. */
  readonly place: string;
  /** What Nix said. */
  readonly text: string;
}

export type DeployRsEval =
  | { readonly kind: "read"; readonly deploy: DeployRsDeploy }
  | DeployRsEvalFailure;

/** What readDeployRsNodes came to: the deploy output, or the error to say. */
export type DeployRsRead =
  | { readonly kind: "read"; readonly deploy: DeployRsDeploy }
  | {
      readonly kind: "failed";
      readonly failure: DeployRsEvalFailure;
      /** The configuration a node's system profile activates, which failed so. */
      readonly broken?: { readonly node: string; readonly configuration: string };
    };

/** What a failure's mark names: a configuration looked at for a node, or the node's system profile. */
export function deployRsFailedPart(
  path: MarkPath | undefined,
):
  | { readonly kind: "configuration"; readonly node: string; readonly configuration: string }
  | { readonly kind: "profile"; readonly node: string }
  | undefined {
  const [deploy, nodes, node, profiles, system, at, kind, configuration] = path ?? [];
  const profile =
    deploy === "deploy" &&
    nodes === "nodes" &&
    typeof node === "string" &&
    profiles === "profiles" &&
    system === "system" &&
    at === "path";
  if (!profile) return undefined;
  if (path?.length === 6) return { kind: "profile", node };
  if (path?.length === 8 && kind === "nixosConfigurations" && typeof configuration === "string") {
    return { kind: "configuration", node, configuration };
  }
  return undefined;
}

/**
 * The flake's deploy output, read (`evaluate`: one evaluation of deployRsExpression) until no
 * configuration it looks at fails: a configuration that fails is left out and the flake read
 * again, as no node's system profile activates it (a node's profile is evaluated whole, and
 * one that activates it fails, under the node's mark). A profile that fails is read again with
 * every configuration evaluated first (`eager`), so that the one it activates is named with it.
 * Reads at most once more than there are configurations and failing profiles.
 */
export async function readDeployRsNodes(
  evaluate: (look: DeployRsLook) => Promise<DeployRsEval>,
): Promise<DeployRsRead> {
  const skipped = new Map<string, DeployRsEvalFailure>();
  const eager = new Set<string>();
  for (;;) {
    const r = await evaluate({ skip: [...skipped.keys()], eager: [...eager] });
    if (r.kind === "read") {
      if (skipped.size === 0) return r;
      const why = [...skipped].map(([c, f]) => [c, `${f.place}: ${f.text}`]);
      return { kind: "read", deploy: { ...r.deploy, skipped: Object.fromEntries(why) } };
    }
    const part = deployRsFailedPart(r.path);
    if (part?.kind === "configuration" && !skipped.has(part.configuration)) {
      skipped.set(part.configuration, r);
      continue;
    }
    if (part?.kind === "profile") {
      const same = [...skipped].find(([, f]) => f.place === r.place && f.text === r.text);
      if (same !== undefined) {
        return { kind: "failed", failure: r, broken: { node: part.node, configuration: same[0] } };
      }
      if (!eager.has(part.node)) {
        eager.add(part.node);
        continue;
      }
    }
    return { kind: "failed", failure: r };
  }
}

/**
 * The error a failed reading says: the configuration a node's profile activates and the node,
 * when that is what failed; else the attribute it failed at. `fix`: the hint's first words, when
 * the command knows the fix better (a file git does not track).
 */
export function deployRsReadError(
  read: Extract<DeployRsRead, { kind: "failed" }>,
  fix: string | undefined,
): InputError {
  const { failure, broken } = read;
  if (broken !== undefined) {
    const profile = ["deploy", "nodes", nixName(broken.node), "profiles", "system", "path"].join(
      ".",
    );
    const configuration = `nixosConfigurations.${nixName(broken.configuration)}`;
    return new InputError(
      "init-eval-failed",
      `${failure.place}: ${configuration}, which ${profile} activates, fails to evaluate: ${failure.text}`,
      {
        hint:
          fix ??
          `the error is Nix's: fix ${configuration} (or give node ${broken.node} a system profile of a configuration that evaluates), then convert again`,
      },
    );
  }
  const at =
    failure.path === undefined || failure.path.length === 0
      ? ""
      : `${formatNixAttrPath(failure.path)}: `;
  return new InputError("init-eval-failed", `${failure.place}: ${at}${failure.text}`, {
    hint: fix ?? "the error is Nix's, evaluating deploy.nodes: fix it there",
  });
}

/** Why the node cannot be converted, each reason (nixship could not reach it, name it, or find its system). */
function nodeRefusals(name: string, node: DeployRsNode, where: string): InputError[] {
  const at = (...rest: string[]) => ["deploy", "nodes", nixName(name), ...rest].join(".");
  const refusals: InputError[] = [];
  if (!validHostName(name)) {
    refusals.push(
      new InputError(
        "bad-node-name",
        `${where}: ${at()}: a nixship host name is lowercase letters, digits and '-' (${NAME_PATTERN.source}, at most ${NAME_MAX_LENGTH})`,
        { hint: "rename the node, then convert it again" },
      ),
    );
  }
  if (node.hostname === null) {
    refusals.push(
      new InputError(
        "no-hostname",
        `${where}: ${at("hostname")} is not set: nixship cannot reach the node`,
        { hint: "deploy-rs requires it too: set it to the node's address" },
      ),
    );
  } else if (!validAddress(node.hostname)) {
    refusals.push(
      new InputError(
        "bad-hostname",
        `${where}: ${at("hostname")}: ${JSON.stringify(node.hostname)} is no hostname or IP address`,
        { hint: "give the user in sshUser and the port in sshOpts" },
      ),
    );
  }
  const system = node.profiles.system;
  if (system === undefined || !system.hasPath) {
    refusals.push(
      new InputError(
        "no-system-profile",
        `${where}: ${at("profiles", "system", "path")} is not set: nixship deploys a node's system profile`,
        {
          hint: "profiles.system.path = deploy-rs.lib.SYSTEM.activate.nixos self.nixosConfigurations.NAME",
        },
      ),
    );
  }
  return refusals;
}

/** The deploy's nodes as a fleet, and the report. Bad input (no hostname, no system) throws. */
export function convertDeployRs(
  deploy: DeployRsDeploy,
  where: string,
  env: { localUser: string; sshAliases?: ReadonlyMap<string, SshAlias> },
): Conversion {
  const report = new Report();
  const hosts: ForeignHost[] = [];
  const blocks: string[] = [];
  const names = Object.keys(deploy.nodes);
  if (names.length === 0) {
    throw new InputError("no-nodes", `${where}: deploy.nodes is empty`, {
      hint: "deploy.nodes.NAME = { hostname = …; profiles.system = { … }; } for each host",
    });
  }
  const merged = new Map<string, GenericSettings>();
  const refusals: InputError[] = [];
  for (const name of names) {
    const node = deploy.nodes[name] as DeployRsNode;
    refusals.push(...nodeRefusals(name, node, where));
    const system = node.profiles.system;
    if (system === undefined) continue;
    // The profile's over the node's over the deploy's, as deploy-rs takes them; but sshOpts
    // it appends, the profile's first (its data.rs merges them with vec::append).
    const sshOpts = [system, node, deploy].flatMap((level) => level.generic.sshOpts ?? []);
    merged.set(name, {
      ...deploy.generic,
      ...node.generic,
      ...system.generic,
      ...(sshOpts.length === 0 ? {} : { sshOpts }),
    });
  }
  const userOf = (s: GenericSettings) => s.sshUser ?? env.localUser;
  for (const [name, s] of merged) {
    const user = userOf(s);
    if (!SSH_USER_PATTERN.test(user)) {
      const at = ["deploy", "nodes", nixName(name), "sshUser"].join(".");
      refusals.push(
        new InputError("bad-ssh-user", `${where}: ${at}: ${JSON.stringify(user)} is no user name`),
      );
    }
    const timeout = activationTimeoutRefusal(deploy, name, s, where);
    if (timeout !== undefined) refusals.push(timeout);
  }
  refuseNodes(where, refusals);
  const users = new Set([...merged.values()].map(userOf));
  const oneUser = users.size === 1 ? [...users][0] : undefined;
  for (const name of names) {
    const node = deploy.nodes[name] as DeployRsNode;
    const s = merged.get(name) as GenericSettings;
    const fields: JsonObject = { address: node.hostname as string };
    report.add(DEPLOY_RS_OPTIONS, "hostname", name);
    const user = userOf(s);
    if (s.sshUser !== undefined) report.add(DEPLOY_RS_OPTIONS, "sshUser", name);
    else if (user !== "root") {
      report.note(
        "sshUser",
        {
          outcome: "mapped",
          text: `unset, so deploy-rs logged in as you: ${user}, written out (nixship's default is root)`,
        },
        name,
      );
    }
    if (oneUser === undefined && user !== "root") fields.sshUser = user;
    const profileUser = s.user ?? (s.sshUser === undefined ? "root" : s.sshUser);
    if (profileUser !== "root") {
      report.note(
        "user",
        { outcome: "left", text: `${profileUser}: nixship activates a system as root only` },
        name,
      );
    }
    if (user !== "root") {
      fields.sudo = true;
      report.add(DEPLOY_RS_OPTIONS, "user", name);
    }
    if (s.sudo !== undefined && s.sudo !== "sudo -u") report.add(DEPLOY_RS_OPTIONS, "sudo", name);
    if (s.interactiveSudo === true) report.add(DEPLOY_RS_OPTIONS, "interactiveSudo", name);
    const sshLines = noteSshOpts(report, name, node.hostname ?? name, s.sshOpts ?? [], user);
    // Its ssh settings go in a block of its own, found by its name (sshConfigBlock).
    if (sshLines.length > 0) {
      blocks.push(sshConfigBlock(name, node.hostname as string, sshLines));
      if (name !== node.hostname) fields.sshHost = name;
    }
    if (s.fastConnection === true) report.add(DEPLOY_RS_OPTIONS, "fastConnection", name);
    if (s.autoRollback === false) {
      report.note(
        "autoRollback",
        {
          outcome: "left",
          text: "false: nixship always puts the previous system back when an activation fails",
        },
        name,
      );
    } else if (s.autoRollback === true) report.add(DEPLOY_RS_OPTIONS, "autoRollback", name);
    const policy: JsonObject = {};
    if (s.magicRollback === false) {
      policy.confirmTimeout = 0;
      report.note(
        "magicRollback",
        { outcome: "mapped", text: "false: policies.NAME.confirmTimeout = 0 (no confirmation)" },
        name,
      );
    } else {
      if (s.magicRollback === true) report.add(DEPLOY_RS_OPTIONS, "magicRollback", name);
      if (s.confirmTimeout === 0) {
        // deploy-rs's 0 is a wait of no time, which no confirmation meets; nixship's is none.
        report.note(
          "confirmTimeout",
          {
            outcome: "mapped",
            text: `0, with magicRollback on: deploy-rs waits no time for the deployer's confirmation, so it rolls the activation back; nixship's confirmTimeout 0 would turn the confirmation off, so nixship's default applies (${POLICY_DEFAULTS.confirmTimeout} s): the host still rolls back unless the deployer confirms`,
          },
          name,
        );
      } else if (s.confirmTimeout !== undefined) {
        policy.confirmTimeout = s.confirmTimeout;
        report.add(DEPLOY_RS_OPTIONS, "confirmTimeout", name);
      }
    }
    if (s.activationTimeout !== undefined && s.magicRollback === false) {
      report.note(
        "activationTimeout",
        {
          outcome: "left",
          text: `${s.activationTimeout}: had no effect, as deploy-rs applies it only while magicRollback waits; nixship's default (600 s) applies`,
        },
        name,
      );
    } else if (s.activationTimeout !== undefined) {
      policy.activationTimeout = s.activationTimeout;
      report.add(DEPLOY_RS_OPTIONS, "activationTimeout", name);
    }
    if (s.tempPath !== undefined) report.add(DEPLOY_RS_OPTIONS, "tempPath", name);
    if (s.remoteBuild === true) report.add(DEPLOY_RS_OPTIONS, "remoteBuild", name);
    const profile = node.profiles.system as DeployRsProfile;
    if (profile.profilePath !== null && profile.profilePath !== SYSTEM_PROFILE) {
      report.add(DEPLOY_RS_OPTIONS, "profilePath", name);
    }
    for (const other of Object.keys(node.profiles).filter((p) => p !== "system")) {
      report.note(
        "profiles.<other>",
        {
          ...DEPLOY_RS_OPTIONS["profiles.<other>"],
          text: `${other}: ${DEPLOY_RS_OPTIONS["profiles.<other>"].text}`,
        },
        name,
      );
    }
    if (node.profilesOrder !== null) report.add(DEPLOY_RS_OPTIONS, "profilesOrder", name);
    hosts.push({ name, fields, system: systemOf(name, profile, report), policy });
  }
  noteBrokenConfigurations(deploy, report);
  unshadowHosts(hosts, blocks, report);
  return {
    hosts,
    ...withSshConfig(
      oneUser !== undefined && oneUser !== "root" ? { user: oneUser } : {},
      blocks,
      undefined,
      { aliases: env.sshAliases ?? new Map(), report },
    ),
    build: null,
    secrets: null,
    nixLet: [],
    needsLib: false,
    jsonOutputLine: null,
    report: report.entries(),
    next: [],
  };
}

/**
 * What became of the node's sshOpts (noteSshOptions), a user among them said as deploy-rs took
 * it: it gives ssh `sshUser@hostname` (its own user without sshUser) before them, and ssh
 * keeps the first user it is given, so `-l U` or `-o User=U` had no effect.
 */
function noteSshOpts(
  report: Report,
  name: string,
  address: string,
  options: readonly string[],
  user: string,
): readonly string[] {
  const said = new Report();
  const lines = noteSshOptions(said, "sshOpts", { name, address }, options, {
    mappedText: DEPLOY_RS_OPTIONS.sshOpts.text,
    userOption: "sshUser",
  });
  const optionUser = sshOptionsAsConfig(options).user;
  for (const e of said.entries()) {
    if (optionUser === undefined || !e.text.startsWith(`the user ${optionUser}: `)) {
      report.note(e.option, { outcome: e.outcome, text: e.text }, name);
    } else if (optionUser !== user) {
      report.note(
        "sshOpts",
        {
          outcome: "left",
          text: `the user ${optionUser}: it had no effect, as deploy-rs gives ssh ${user}@${address} first (sshUser, else your own user) and ssh keeps the first user it is given: the host is reached as ${user}, as deploy-rs reached it`,
        },
        name,
      );
    }
  }
  return lines;
}

/**
 * The configurations that fail to evaluate and that no node's system profile activates (the
 * reading left them out, or they threw as it looked at them): said, as no host runs them.
 */
function noteBrokenConfigurations(deploy: DeployRsDeploy, report: Report): void {
  const why = new Map<string, string | undefined>(Object.entries(deploy.skipped ?? {}));
  for (const node of Object.values(deploy.nodes)) {
    for (const c of node.profiles.system?.failed ?? []) if (!why.has(c)) why.set(c, undefined);
  }
  for (const [configuration, text] of why) {
    const said =
      text === undefined ? "it throws" : text.length > 300 ? `${text.slice(0, 300)}…` : text;
    report.note("nixosConfigurations", {
      outcome: "left",
      text: `${nixName(configuration)}: it fails to evaluate (${said}), and no node's system profile activates it: no host runs it`,
    });
  }
}

/**
 * Why the node's activationTimeout cannot be carried, named where the flake sets it, or
 * undefined. Only one deploy-rs applies counts: without magicRollback it had no effect, and is
 * left behind, whatever its value.
 */
function activationTimeoutRefusal(
  deploy: DeployRsDeploy,
  name: string,
  s: GenericSettings,
  where: string,
): InputError | undefined {
  const seconds = s.activationTimeout;
  const { min, max } = POLICY_RANGES.activationTimeout;
  if (seconds === undefined || s.magicRollback === false) return undefined;
  if (seconds >= min && seconds <= max) return undefined;
  return new InputError(
    "bad-activation-timeout",
    `${where}: ${settingPath(deploy, name, "activationTimeout")}: ${seconds} seconds: nixship gives an activation ${min} to ${max} seconds (policies.NAME.activationTimeout)`,
    {
      hint: "set activationTimeout to the seconds a switch may take, or remove it (nixship's default is 600)",
    },
  );
}

/** The attribute that sets a node's generic setting: its system profile's, its own, or the deploy's. */
function settingPath(deploy: DeployRsDeploy, name: string, setting: keyof GenericSettings): string {
  const node = deploy.nodes[name] as DeployRsNode;
  const at = ["deploy", "nodes", nixName(name)];
  if (node.profiles.system?.generic[setting] !== undefined) {
    return [...at, "profiles", "system", setting].join(".");
  }
  if (node.generic[setting] !== undefined) return [...at, setting].join(".");
  return ["deploy", setting].join(".");
}

/** The configuration the profile activates when one is found (the node's own name first), else the path. */
function systemOf(name: string, profile: DeployRsProfile, report: Report): SystemRef {
  const configuration = profile.matches.includes(name)
    ? name
    : profile.matches.length === 1
      ? profile.matches[0]
      : undefined;
  if (configuration !== undefined) {
    report.note(
      "profiles.system.path",
      {
        outcome: "mapped",
        text: "hosts.NAME.system: the NixOS configuration it activates (activate.nixos of it), whose toplevel the host runs",
      },
      name,
    );
    return {
      nix: `self.nixosConfigurations.${nixName(configuration)}`,
      installable: `.#nixosConfigurations.${configuration}`,
    };
  }
  report.note(
    "profiles.system.path",
    {
      outcome: "mapped",
      text: "hosts.NAME.system: the path itself (no NixOS configuration of the flake was found in it), activated by its bin/switch-to-configuration",
    },
    name,
  );
  return {
    nix: `self.deploy.nodes.${nixName(name)}.profiles.system.path`,
    installable: `.#deploy.nodes.${name}.profiles.system.path`,
  };
}
