// `nixship init --from colmena`: a colmena hive (a flake's `colmenaHive` or `colmena` output, or
// hive.nix) read in one Nix evaluation, and its nodes and options turned into a fleet, each option
// carried over, mapped, or named as left behind with why. Pure: the command runs the evaluation.

import { InputError } from "../errors.js";
import { nixString } from "../nix/nix-string.js";
import { shellWord } from "../util/shell-quote.js";
import { NIX_MARK_FUNCTION } from "./flake-fleet.js";
import { NAME_MAX_LENGTH, NAME_PATTERN, SSH_USER_PATTERN } from "./fleet.js";
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
import type { SshAlias } from "./ssh-alias.js";

const SSH_CONFIG = `${SSH_CONFIG_FILE} (beside the fleet, its ssh.configFile)`;

/** Every option colmena's manual lists, and what nixship makes of it. */
export const COLMENA_OPTIONS = {
  "deployment.targetHost": {
    outcome: "carried",
    text: "hosts.NAME.address (health checks' {address} too)",
  },
  "deployment.targetPort": {
    outcome: "mapped",
    text: `a Port line in a block of the host's own in ${SSH_CONFIG}, which hosts.NAME.sshHost names`,
  },
  "deployment.targetUser": {
    outcome: "carried",
    text: "ssh.user (one user for every host) or hosts.NAME.sshUser",
  },
  "deployment.allowLocalDeployment": {
    outcome: "left",
    text: "nixship deploys over ssh, ssm or its agent, never to the machine it runs on: run nixos-rebuild there, or make the host an agent host",
  },
  "deployment.buildOnTarget": {
    outcome: "left",
    text: "nixship builds once, on the deployer, its remote builders or one build host (build.builders, build.host: docs/builds.md), and hosts fetch from the cache",
  },
  "deployment.tags": { outcome: "carried", text: "hosts.NAME.tags (--on @tag selects by them)" },
  "deployment.keys": {
    outcome: "mapped",
    text: "secrets.entries (age-encrypted files beside the fleet, docs/secrets.md), one per node and key",
  },
  "deployment.keys.<name>.name": {
    outcome: "mapped",
    text: "the file name in secrets.entries.NAME.path",
  },
  "deployment.keys.<name>.text": {
    outcome: "mapped",
    text: "encrypted from your copy with 'nixship secrets set NAME -' (nixship keeps no plaintext in the fleet)",
  },
  "deployment.keys.<name>.keyFile": {
    outcome: "mapped",
    text: "encrypted with 'nixship secrets set NAME --from FILE'",
  },
  "deployment.keys.<name>.keyCommand": {
    outcome: "left",
    text: "nixship runs no command at deploy time for a secret: its entry is written (path, owner, group, mode); run the command once and encrypt its output with 'nixship secrets set NAME -'",
  },
  "deployment.keys.<name>.destDir": {
    outcome: "mapped",
    text: "secrets.entries.NAME.path (a file under /run, on a tmpfs, as /run/keys is)",
  },
  "deployment.keys.<name>.path": { outcome: "carried", text: "secrets.entries.NAME.path" },
  "deployment.keys.<name>.user": { outcome: "carried", text: "secrets.entries.NAME.owner" },
  "deployment.keys.<name>.group": { outcome: "carried", text: "secrets.entries.NAME.group" },
  "deployment.keys.<name>.permissions": {
    outcome: "carried",
    text: "secrets.entries.NAME.mode",
  },
  "deployment.keys.<name>.uploadAt": {
    outcome: "left",
    text: "nixship installs a host's secrets before the switch (colmena's pre-activation), and keeps them if the switch fails; there is no post-activation upload",
  },
  "deployment.replaceUnknownProfiles": {
    outcome: "left",
    text: "nixship replaces what a host runs with what the fleet gives it; 'nixship plan' and 'status' show what each host runs first, and 'rollback' refuses a host changed since unless --force",
  },
  "deployment.privilegeEscalationCommand": {
    outcome: "left",
    text: "a non-root ssh user reaches the host through its pinned nixship-activate with 'sudo -n' (hosts.NAME.sudo, nixosModules.host: docs/pinned-hosts.md); no other command",
  },
  "deployment.sshOptions": {
    outcome: "mapped",
    text: `the same settings as lines in a block of the host's own in ${SSH_CONFIG}, which hosts.NAME.sshHost names`,
  },
  defaults: {
    outcome: "carried",
    text: "applied to every node: its systems are the hive's, evaluated as colmena evaluates them",
  },
  network: { outcome: "carried", text: "read as meta, as colmena reads it" },
  "meta.nixpkgs": {
    outcome: "carried",
    text: "the nodes are evaluated with it (the fleet reads the hive's systems)",
  },
  "meta.nodeNixpkgs": { outcome: "carried", text: "each of those nodes is evaluated with its own" },
  "meta.specialArgs": { outcome: "carried", text: "given to every node's modules" },
  "meta.nodeSpecialArgs": { outcome: "carried", text: "given to that node's modules" },
  "meta.machinesFile": {
    outcome: "mapped",
    text: "build.builders: the same file, with '@' before it (Nix's own builders syntax)",
  },
  "meta.name": { outcome: "left", text: "a fleet has no name: its cache and hosts say what it is" },
  "meta.description": { outcome: "left", text: "a fleet has no description" },
  "meta.allowApplyAll": {
    outcome: "left",
    text: "nixship deploys every host unless --on selects some: there is no switch that requires --on",
  },
} as const satisfies Record<string, OptionFate>;

/** A key of a node as the evaluation gives it: never its text or command, only that it has one. */
export interface ColmenaKey {
  readonly name: string;
  readonly hasText: boolean;
  readonly keyFile: string | null;
  /** A keyFile among the flake's files: its place in the flake (`secrets/db.key`), else null. */
  readonly keyFileInFlake: string | null;
  /** Such a keyFile's copy is in the store with the flake's (git tracks it, or there is no git). */
  readonly keyFileCopied: boolean;
  readonly hasCommand: boolean;
  readonly path: string;
  readonly destDir: string;
  readonly user: string;
  readonly group: string;
  readonly permissions: string;
  readonly uploadAt: string;
}

export interface ColmenaNode {
  readonly targetHost: string | null;
  readonly targetPort: number | null;
  readonly targetUser: string | null;
  readonly allowLocalDeployment: boolean;
  readonly buildOnTarget: boolean;
  readonly tags: readonly string[];
  readonly keys: Readonly<Record<string, ColmenaKey>>;
  readonly replaceUnknownProfiles: boolean;
  readonly privilegeEscalationCommand: readonly string[];
  readonly sshOptions: readonly string[];
}

/** Which hive was read: the flake's evaluated `colmenaHive`, its raw `colmena`, or hive.nix. */
export type HiveKind = "colmenaHive" | "colmena" | "hive.nix";

export interface ColmenaHive {
  readonly kind: HiveKind;
  /** The flake has a `nixship` output already: its fleet. */
  readonly hasFleet?: boolean;
  readonly nodes: Readonly<Record<string, ColmenaNode>>;
  readonly meta: {
    readonly nixpkgs: boolean;
    readonly nodeNixpkgs: readonly string[];
    readonly specialArgs: readonly string[];
    readonly nodeSpecialArgs: readonly string[];
    readonly machinesFile: string | null;
    /** A machinesFile among the flake's files: its place in the flake (`machines`), else null. */
    readonly machinesFileInFlake: string | null;
    readonly name: string | null;
    readonly description: string | null;
    readonly allowApplyAll: boolean | null;
  };
  readonly defaults: boolean;
  readonly network: boolean;
}

/**
 * One `nix eval --json` of the hive in `dir`: the flake's `colmenaHive` (colmena's makeHive:
 * its `deploymentConfig`), else its `colmena`, else its `hive.nix` (both read by nixship's
 * lib.readColmenaHive, `hiveLib`); or `{ missing = [outputs]; }`. Each option is evaluated under
 * a mark naming the node and option, so that an error in a node's configuration names it.
 */
export function colmenaExpression(dir: string, flake: string | null, hiveLib: string): string {
  const str = nixString;
  return `let
  mark = ${NIX_MARK_FUNCTION};
  outputs = ${flake === null ? "{ }" : `(builtins.getFlake ${str(flake)}).outputs`};
  # The flake's own directory in its copy in the store (in a git repository, only what git
  # tracks): under its source's root, which sourceInfo.outPath is for Nix 2.8 and 2.26 alike
  # (outPath is the root for 2.8, the flake's directory for 2.26).
  flakeCopy = ${flake === null ? "null" : `"\${(builtins.getFlake ${str(flake)}).sourceInfo.outPath}${flakeSubdir(flake) === "" ? "" : `/${flakeSubdir(flake)}`}"`};
  # The flake's hive.nix as Nix reads the flake, as the fleet init writes will import it.
  hiveFile = ${flake === null ? str(`${dir}/hive.nix`) : `"\${flakeCopy}/hive.nix"`};
  kind = if outputs ? colmenaHive then "colmenaHive" else if outputs ? colmena then "colmena"
    else if builtins.pathExists hiveFile then "hive.nix" else null;
  raw = if kind == "colmena" then outputs.colmena else import hiveFile;
  hiveAttrs = if builtins.isFunction raw || raw ? __functor then raw { } else raw;
  read = import ${str(hiveLib)} raw;
  deployments = if kind == "colmenaHive" then outputs.colmenaHive.deploymentConfig else read.deployment;
  m = if kind == "colmenaHive" then outputs.colmenaHive.metaConfig or { } else read.meta;
  orNull = v: if v == null then null else toString v;
  # The flake's files as Nix reads them, its copy in the store (none for a hive.nix read in
  # place, whose keyFiles are where they are): a keyFile among them (./secrets/k) names its
  # file by its place in the flake, and its copy exists only where Nix copied it (in a git
  # repository, what git tracks).
  sourcePrefix = ${flake === null ? '""' : `"\${flakeCopy}/"`};
  inSource = f: sourcePrefix != "" && builtins.substring 0 (builtins.stringLength sourcePrefix) f == sourcePrefix;
  inFlake = f: if f != null && inSource f
    then builtins.substring (builtins.stringLength sourcePrefix) (-1) f else null;
  keyOf = k: let file = orNull (k.keyFile or null); in {
    inherit (k) name destDir user group permissions uploadAt;
    path = k.path or "\${k.destDir}/\${k.name}";
    keyFile = file;
    keyFileInFlake = inFlake file;
    keyFileCopied = file != null && inSource file && builtins.pathExists file;
    hasText = (k.text or null) != null;
    hasCommand = (k.keyCommand or null) != null;
  };
  defaults = {
    targetPort = null; targetUser = "root"; allowLocalDeployment = false; buildOnTarget = false;
    tags = [ ]; keys = { }; replaceUnknownProfiles = true;
    privilegeEscalationCommand = [ "sudo" "-H" "--" ]; sshOptions = [ ];
  };
  nodeOf = name: d: builtins.mapAttrs (option: default:
    let v = mark [ name "deployment" option ] (d.\${option} or default); in
    mark [ name "deployment" option ] (builtins.deepSeq v (if option == "keys" then builtins.mapAttrs (_: keyOf) v else v))
  ) (defaults // { targetHost = name; });
in
  if kind == null then { missing = builtins.attrNames outputs; }
  else {
    inherit kind;
    hasFleet = outputs ? nixship;
    nodes = builtins.mapAttrs nodeOf (mark [ ] deployments);
    meta = mark [ "meta" ] {
      nixpkgs = m ? nixpkgs && m.nixpkgs != null;
      nodeNixpkgs = builtins.attrNames (m.nodeNixpkgs or { });
      specialArgs = builtins.attrNames (m.specialArgs or { });
      nodeSpecialArgs = builtins.attrNames (m.nodeSpecialArgs or { });
      machinesFile = orNull (m.machinesFile or null);
      machinesFileInFlake = inFlake (orNull (m.machinesFile or null));
      name = m.name or null;
      description = m.description or null;
      allowApplyAll = m.allowApplyAll or null;
    };
    defaults = kind != "colmenaHive" && hiveAttrs ? defaults;
    network = kind != "colmenaHive" && hiveAttrs ? network;
  }`;
}

/** The flake's directory within its source (`git+file:///repo?dir=ops`: "ops"), "" at the top. */
function flakeSubdir(flake: string): string {
  const query = flake.indexOf("?");
  return query < 0 ? "" : (new URLSearchParams(flake.slice(query + 1)).get("dir") ?? "");
}

/** Where errors say the hive's attribute is: `hive.nix: web1.deployment.targetHost`. */
export function hiveAttribute(kind: HiveKind, path: readonly (string | number)[]): string {
  const names = (p: readonly (string | number)[]) =>
    p.map((s) => (typeof s === "number" ? `[${s}]` : nixName(s))).join(".");
  if (kind === "colmenaHive") {
    // makeHive's deploymentConfig.NODE is the node's config.deployment.
    const [node, , ...rest] = path;
    const within = node === undefined ? [] : [node, ...rest];
    return ["colmenaHive.deploymentConfig", names(within)].filter((s) => s !== "").join(".");
  }
  const inside = names(path);
  return kind === "colmena"
    ? ["colmena", inside].filter((s) => s !== "").join(".")
    : inside || "hive";
}

/** The hive's nodes as a fleet, and the report. Bad input (a node nixship cannot reach) throws. */
export function convertColmena(
  hive: ColmenaHive,
  where: string,
  env: { sshConfigFile?: string; flakeDir?: string; sshAliases?: ReadonlyMap<string, SshAlias> },
): Conversion {
  const report = new Report();
  const next: string[] = [];
  const hosts: ForeignHost[] = [];
  const secrets: JsonObject = {};
  const blocks: string[] = [];
  const all = Object.keys(hive.nodes);
  if (all.length === 0) {
    throw new InputError("no-nodes", `${where}: the hive has no nodes`, {
      hint: "a hive's nodes are its attributes besides meta and defaults",
    });
  }
  const names = all.filter((name) => !applyLocalOnly(hive.nodes[name] as ColmenaNode));
  refuseApplyLocalOnly(hive, all, names, where);
  for (const name of all.filter((n) => !names.includes(n))) {
    report.note("deployment.targetHost", { outcome: "left", text: APPLY_LOCAL_ONLY }, name);
  }
  refuseNodes(
    where,
    names.flatMap((name) => nodeRefusals(hive, name, where)),
  );
  const users = new Set(names.map((n) => userOf(hive.nodes[n] as ColmenaNode) ?? "root"));
  const oneUser = users.size === 1 ? [...users][0] : undefined;
  const tags = tagNames(names.flatMap((n) => hive.nodes[n]?.tags ?? []));
  for (const name of names) {
    const node = hive.nodes[name] as ColmenaNode;
    // Nodes without one were left out above.
    const address = node.targetHost as string;
    const fields: JsonObject = { address };
    report.add(COLMENA_OPTIONS, "deployment.targetHost", name);
    const nodeTags = [...new Set(node.tags)];
    const kept = nodeTags.flatMap((t) => {
      const named = tags.get(t);
      return named?.tag === undefined ? [] : [named.tag];
    });
    if (kept.length > 0) {
      fields.tags = kept;
      report.add(COLMENA_OPTIONS, "deployment.tags", name);
    }
    for (const tag of nodeTags) {
      const named = tags.get(tag);
      if (named?.text !== undefined) {
        report.note(
          "deployment.tags",
          { outcome: named.tag === undefined ? "left" : "mapped", text: named.text },
          name,
        );
      }
    }
    const user = userOf(node);
    if (node.targetUser === null && user !== null) {
      report.note(
        "deployment.sshOptions",
        {
          outcome: "mapped",
          text: `the user ${user}: ${user === "root" ? "root, nixship's own default" : "ssh.user (one user for every host) or hosts.NAME.sshUser"}, as deployment.targetUser is null and ssh took the user from these options`,
        },
        name,
      );
    }
    if (user !== null && user !== "root") {
      if (oneUser === undefined) fields.sshUser = user;
      if (node.targetUser !== null) report.add(COLMENA_OPTIONS, "deployment.targetUser", name);
      // As root, colmena's escalation command is not used; as another user nixship's
      // counterpart is the host's pinned nixship-activate, through sudo.
      fields.sudo = true;
      report.note(
        "deployment.targetUser",
        {
          outcome: "mapped",
          text: "a user other than root: hosts.NAME.sudo = true, so that the host's pinned nixship-activate activates as root; only a running system that imports nixship.nixosModules.host has it: add it to the node's system and activate that once with colmena (or deploy once as root) before nixship's first deploy (docs/pinned-hosts.md)",
        },
        name,
      );
      if (node.privilegeEscalationCommand.join(" ") !== "sudo -H --") {
        report.add(COLMENA_OPTIONS, "deployment.privilegeEscalationCommand", name);
      }
    } else if (user === null) {
      report.note(
        "deployment.targetUser",
        {
          outcome: "mapped",
          text: "null (ssh's own choice): nixship names the user, ssh.user, root unless set",
        },
        name,
      );
    }
    const port = node.targetPort;
    // One bad line and ssh refuses the whole file, every host's: a port that is not one stays.
    const portOk = port !== null && Number.isInteger(port) && port >= 1 && port <= 65535;
    const portLines = portOk ? [`Port ${port}`] : [];
    if (portOk) {
      const fate = COLMENA_OPTIONS["deployment.targetPort"];
      report.note(
        "deployment.targetPort",
        { ...fate, text: `${fate.text}: ${portLines[0]}` },
        name,
      );
    } else if (port !== null) {
      report.note(
        "deployment.targetPort",
        { outcome: "left", text: `${port}: not a port from 1 to 65535` },
        name,
      );
    }
    const optionLines = noteSshOptionsOf(report, name, address, node);
    // Its ssh settings go in one block of its own, which ssh finds by its name (sshConfigBlock).
    const sshLines = [...portLines, ...optionLines];
    if (sshLines.length > 0) {
      blocks.push(sshConfigBlock(name, address, sshLines));
      if (name !== node.targetHost) fields.sshHost = name;
    }
    if (node.allowLocalDeployment)
      report.add(COLMENA_OPTIONS, "deployment.allowLocalDeployment", name);
    if (node.buildOnTarget) report.add(COLMENA_OPTIONS, "deployment.buildOnTarget", name);
    if (!node.replaceUnknownProfiles)
      report.add(COLMENA_OPTIONS, "deployment.replaceUnknownProfiles", name);
    convertKeys(name, node, { secrets, report, next, flakeDir: env.flakeDir });
    hosts.push({ name, fields, system: systemOf(hive.kind, name), policy: {} });
  }
  const ssh: JsonObject = {};
  if (oneUser !== undefined && oneUser !== "root") ssh.user = oneUser;
  const given = env.sshConfigFile === "" ? undefined : env.sshConfigFile;
  if (given !== undefined && blocks.length === 0) {
    ssh.configFile = given;
    report.note("SSH_CONFIG_FILE", {
      outcome: "carried",
      text: "ssh.configFile: the ssh_config colmena was given",
    });
  } else if (given !== undefined) {
    report.note("SSH_CONFIG_FILE", {
      outcome: "carried",
      text: `included by ${SSH_CONFIG_FILE}, the fleet's ssh.configFile, after the hosts' blocks`,
    });
  }
  unshadowHosts(hosts, blocks, report);
  const withSsh = withSshConfig(ssh, blocks, given, {
    aliases: env.sshAliases ?? new Map(),
    report,
  });
  convertMeta(hive, report);
  const raw = hive.kind !== "colmenaHive";
  const hiveExpr = hive.kind === "colmena" ? "self.colmena" : "(import ./hive.nix)";
  return {
    hosts,
    ...withSsh,
    build: buildersOf(hive.meta, env.flakeDir),
    secrets: Object.keys(secrets).length > 0 ? secrets : null,
    nixLet: raw ? [`hive = nixshipLib.readColmenaHive ${hiveExpr};`] : [],
    needsLib: raw,
    jsonOutputLine: raw ? `nixshipHive = nixship.lib.readColmenaHive ${hiveExpr};` : null,
    report: report.entries(),
    next,
  };
}

/**
 * The hive's machines file as the fleet's builders. One of the flake's files is named where it
 * is in the flake's directory, not in the flake's copy in the store, which the evaluation names
 * (colmena reads a fresh copy at every run; the fleet's would keep old machines, and be gone
 * after a garbage collection). A file outside the flake is named as it is.
 */
function buildersOf(meta: ColmenaHive["meta"], flakeDir: string | undefined): JsonObject | null {
  if (meta.machinesFile === null) return null;
  const file =
    meta.machinesFileInFlake !== null && flakeDir !== undefined
      ? `${flakeDir}/${meta.machinesFileInFlake}`
      : meta.machinesFile;
  return { builders: `@${file}` };
}

/**
 * The user colmena reaches the node as: its targetUser; when that is null (ssh's own choice),
 * the one its sshOptions give ssh (`-l U`, `-o User=U`), which then names the user, as colmena
 * gives ssh the host alone; else null (ssh_config's, or the local user).
 */
function userOf(node: ColmenaNode): string | null {
  return node.targetUser ?? sshOptionsAsConfig(node.sshOptions).user ?? null;
}

/**
 * What became of the node's sshOptions (noteSshOptions), a user among them said as colmena took
 * it: the host's user when targetUser is null (userOf); else it had no effect, as colmena gives
 * ssh `targetUser@host` before them, and ssh keeps the first user it is given.
 */
function noteSshOptionsOf(
  report: Report,
  name: string,
  address: string,
  node: ColmenaNode,
): readonly string[] {
  const said = new Report();
  const lines = noteSshOptions(said, "deployment.sshOptions", { name, address }, node.sshOptions, {
    mappedText: COLMENA_OPTIONS["deployment.sshOptions"].text,
    userOption: "deployment.targetUser",
  });
  const optionUser = sshOptionsAsConfig(node.sshOptions).user;
  for (const e of said.entries()) {
    if (optionUser === undefined || !e.text.startsWith(`the user ${optionUser}: `)) {
      report.note(e.option, { outcome: e.outcome, text: e.text }, name);
    } else if (node.targetUser !== null && node.targetUser !== optionUser) {
      report.note(
        "deployment.sshOptions",
        {
          outcome: "left",
          text: `the user ${optionUser}: it had no effect, as colmena gives ssh ${node.targetUser}@${address} first (deployment.targetUser) and ssh keeps the first user it is given: the host is reached as ${node.targetUser}, as colmena reached it`,
        },
        name,
      );
    }
  }
  return lines;
}

/** What each of the hive's tags is in nixship: the same, another it maps to, or none, and why. */
interface TagName {
  /** The tag the hosts get; undefined: none (left behind). */
  readonly tag?: string;
  /** What the report says of it; undefined: carried over as it is. */
  readonly text?: string;
}

/**
 * The hive's tags as nixship's (lowercase letters, digits and '-', as host names): one it cannot
 * hold is lowercased, and any other character made '-', when no other tag of the hive becomes
 * the same (so that @tag selects the nodes it did); else it is left behind, and why said.
 */
function tagNames(all: readonly string[]): Map<string, TagName> {
  const valid = (t: string) => NAME_PATTERN.test(t) && t.length <= NAME_MAX_LENGTH;
  const distinct = [...new Set(all)];
  const target = (t: string) =>
    valid(t)
      ? t
      : t
          .toLowerCase()
          .replace(/[^a-z0-9-]+/g, "-")
          .replace(/^-+/, "");
  const from = new Map<string, string[]>();
  for (const t of distinct) from.set(target(t), [...(from.get(target(t)) ?? []), t]);
  const rule = `nixship's tags are lowercase letters, digits and '-' (at most ${NAME_MAX_LENGTH})`;
  const names = new Map<string, TagName>();
  for (const t of distinct) {
    const to = target(t);
    const others = (from.get(to) ?? []).filter((o) => o !== t);
    if (valid(t)) names.set(t, { tag: t });
    else if (!valid(to)) {
      names.set(t, {
        text: `the tag ${JSON.stringify(t)}: ${rule}, and it has no such form: left behind`,
      });
    } else if (others.length > 0) {
      names.set(t, {
        text: `the tag ${JSON.stringify(t)}: ${rule}; it would be "${to}", as ${others.map((o) => JSON.stringify(o)).join(", ")} ${others.length === 1 ? "is" : "are"} too, and @${to} would select the nodes of both: left behind (rename it in the hive and convert again)`,
      });
    } else {
      names.set(t, {
        tag: to,
        text: `the tag ${JSON.stringify(t)}: "${to}", as ${rule}: --on @${to} selects the hosts colmena's --on @${t} did`,
      });
    }
  }
  return names;
}

/** The node's system: colmenaHive's, or the node as nixship's lib reads the hive. */
function systemOf(kind: HiveKind, name: string): SystemRef {
  if (kind === "colmenaHive") {
    return {
      nix: `self.colmenaHive.nodes.${nixName(name)}`,
      installable: `.#colmenaHive.toplevel.${name}`,
    };
  }
  return { nix: `hive.nodes.${nixName(name)}`, installable: `.#nixshipHive.nodes.${name}` };
}

/** What becomes of a node whose targetHost is null (colmena's manual's apply-local node). */
const APPLY_LOCAL_ONLY =
  "null: apply-local only; colmena apply skips it too (nixship never deploys to the machine it runs on): the node is no host of the fleet, and 'colmena apply-local' or nixos-rebuild on it stays its way to switch";

/**
 * A node whose targetHost is null: colmena's manual keeps one for a machine deployed to only
 * by `colmena apply-local`, which `colmena apply` skips. nixship skips it too.
 */
function applyLocalOnly(node: ColmenaNode): boolean {
  return node.targetHost === null;
}

/** Fails when every node of the hive is apply-local only: there would be no host to deploy. */
function refuseApplyLocalOnly(
  hive: ColmenaHive,
  all: readonly string[],
  kept: readonly string[],
  where: string,
): void {
  if (kept.length > 0) return;
  const attributes = all.map((name) =>
    hiveAttribute(hive.kind, [name, "deployment", "targetHost"]),
  );
  throw new InputError(
    "no-target-host",
    `${where}: ${attributes.join(", ")} ${all.length === 1 ? "is" : "are"} null (apply-local only): nixship cannot reach any node of the hive`,
    {
      hint: "set deployment.targetHost to the address of each node nixship should deploy to over ssh",
    },
  );
}

/** Why the node cannot be converted, each reason (nixship could not reach it, or name it). */
function nodeRefusals(hive: ColmenaHive, name: string, where: string): InputError[] {
  const node = hive.nodes[name] as ColmenaNode;
  const at = (option: string) => hiveAttribute(hive.kind, [name, "deployment", option]);
  const refusals: InputError[] = [];
  if (!validHostName(name)) {
    refusals.push(
      new InputError(
        "bad-node-name",
        `${where}: ${hiveAttribute(hive.kind, [name])}: a nixship host name is lowercase letters, digits and '-' (${NAME_PATTERN.source}, at most ${NAME_MAX_LENGTH})`,
        { hint: "rename the node in the hive, then convert it again" },
      ),
    );
  }
  if (node.targetHost !== null && !validAddress(node.targetHost)) {
    refusals.push(
      new InputError(
        "bad-target-host",
        `${where}: ${at("targetHost")}: ${JSON.stringify(node.targetHost)} is no hostname or IP address`,
        { hint: "give the user in deployment.targetUser and the port in deployment.targetPort" },
      ),
    );
  }
  const user = userOf(node);
  if (user !== null && user !== "root" && !SSH_USER_PATTERN.test(user)) {
    refusals.push(
      new InputError(
        "bad-target-user",
        node.targetUser === null
          ? `${where}: ${at("sshOptions")}: the user ${JSON.stringify(user)} is no user name`
          : `${where}: ${at("targetUser")}: ${JSON.stringify(user)} is no user name`,
      ),
    );
  }
  return refusals;
}

/** `wanted`, or with the least number after it that no secret of `secrets` has taken yet. */
function freeName(wanted: string, secrets: JsonObject): string {
  if (!Object.hasOwn(secrets, wanted)) return wanted;
  for (let n = 2; ; n++) if (!Object.hasOwn(secrets, `${wanted}-${n}`)) return `${wanted}-${n}`;
}

/** A secret's name: the key's, prefixed by the node's (keys are per node, secrets per fleet). */
const SECRET_NAME = /[^A-Za-z0-9_.-]+/g;

function convertKeys(
  name: string,
  node: ColmenaNode,
  into: {
    readonly secrets: JsonObject;
    readonly report: Report;
    readonly next: string[];
    /** The flake's directory: a file under it is copied into the store with the flake. */
    readonly flakeDir: string | undefined;
  },
): void {
  const { secrets, report, next, flakeDir } = into;
  for (const [attr, key] of Object.entries(node.keys)) {
    const option = (o: string) => `deployment.keys.<name>.${o}`;
    // The file a person reads the secret from: one of the flake's files by its place in the
    // flake (the evaluation names its copy in the store, which git may not have made).
    const keyFile =
      key.keyFileInFlake !== null && flakeDir !== undefined
        ? `${flakeDir}/${key.keyFileInFlake}`
        : key.keyFile;
    // Where the secret's text is exposed, said for every key, whether nixship takes it or not.
    exposure(key, keyFile, flakeDir, (o, text) =>
      report.note(option(o), { outcome: "left", text }, `${name}:${attr}`),
    );
    if (!key.path.startsWith("/run/")) {
      // No secret is made for it: said in the report and among the next steps.
      report.note(
        option("destDir"),
        {
          outcome: "left",
          text: `${key.path}: this key is not carried over (the fleet has no secret for it): nixship keeps secrets in files under /run only, on a tmpfs, so that they never reach a disk; give it a destDir under /run (colmena's default, /run/keys) and convert again, or put the file there another way`,
        },
        `${name}:${attr}`,
      );
      next.push(
        `# the key ${attr} of ${name} (${key.path}) is not carried over: nixship keeps secrets under /run only; give it a destDir under /run (such as /run/keys) and convert again`,
      );
      continue;
    }
    const secret = freeName(`${name}-${attr}`.replace(SECRET_NAME, "-"), secrets);
    if (secret !== `${name}-${attr}`.replace(SECRET_NAME, "-")) {
      report.note(
        "deployment.keys",
        {
          outcome: "mapped",
          text: `secret ${secret}: another key's name makes ${`${name}-${attr}`.replace(SECRET_NAME, "-")} too`,
        },
        `${name}:${attr}`,
      );
    }
    secrets[secret] = {
      hosts: name,
      ...(key.user === "root" ? {} : { owner: key.user }),
      ...(key.group === "root" ? {} : { group: key.group }),
      mode: key.permissions,
      path: key.path,
    };
    report.add(COLMENA_OPTIONS, "deployment.keys", `${name}:${attr}`);
    if (key.hasCommand) {
      // Its entry is written (path, owner, mode), for its command's output once run by hand.
      report.add(COLMENA_OPTIONS, option("keyCommand"), `${name}:${attr}`);
      // The report says to run the command and give its output on stdin.
      next.push(`nixship secrets set ${secret} -`);
    } else if (keyFile !== null) {
      report.add(COLMENA_OPTIONS, option("keyFile"), `${name}:${attr}`);
      next.push(`nixship secrets set ${secret} --from ${shellWord(keyFile)}`);
    } else if (key.hasText) {
      report.add(COLMENA_OPTIONS, option("text"), `${name}:${attr}`);
      next.push(`nixship secrets set ${secret} -`);
    }
    if (key.uploadAt !== "pre-activation")
      report.add(COLMENA_OPTIONS, option("uploadAt"), `${name}:${attr}`);
  }
}

/**
 * What says a key's secret is where every user of the machine can read it: text in the hive,
 * or a keyFile among the flake's files, which Nix copies into the store with the flake.
 */
function exposure(
  key: ColmenaKey,
  keyFile: string | null,
  flakeDir: string | undefined,
  note: (option: string, text: string) => void,
): void {
  if (key.hasCommand) return;
  if (keyFile !== null) {
    if (key.keyFileCopied) {
      note(
        "keyFile",
        `${keyFile}: the flake holds this secret, and Nix copied it into the store with the flake, where every user of the machine can read it: rotate it, and keep its file out of the flake`,
      );
    } else if (key.keyFileInFlake === null && keyFile.startsWith("/nix/store/")) {
      note(
        "keyFile",
        `${keyFile}: this secret's file is in the Nix store, where every user of the machine can read it: rotate it, and keep its file out of the store`,
      );
    } else if (
      // A path by its name in the flake's directory (a string, not one of the files Nix read).
      key.keyFileInFlake === null &&
      flakeDir !== undefined &&
      keyFile.startsWith(`${flakeDir}/`)
    ) {
      note(
        "keyFile",
        `${keyFile}: the flake holds this secret, so Nix copies it into the store with the flake (every file of a flake that is no git repository, the tracked ones of one that is), where every user of the machine can read it: rotate it, and keep its file out of the flake`,
      );
    }
  } else if (key.hasText) {
    note(
      "text",
      "the hive holds this secret's text, and Nix copies the flake's files into the store, which every user of the machine can read: once 'nixship secrets set' has it, delete the text from the hive, and rotate it",
    );
  }
}

function convertMeta(hive: ColmenaHive, report: Report): void {
  const { meta } = hive;
  if (hive.defaults) report.add(COLMENA_OPTIONS, "defaults");
  if (hive.network) report.add(COLMENA_OPTIONS, "network");
  if (meta.nixpkgs) report.add(COLMENA_OPTIONS, "meta.nixpkgs");
  for (const n of meta.nodeNixpkgs) report.add(COLMENA_OPTIONS, "meta.nodeNixpkgs", n);
  if (meta.specialArgs.length > 0) report.add(COLMENA_OPTIONS, "meta.specialArgs");
  for (const n of meta.nodeSpecialArgs) report.add(COLMENA_OPTIONS, "meta.nodeSpecialArgs", n);
  if (meta.machinesFile !== null) report.add(COLMENA_OPTIONS, "meta.machinesFile");
  if (meta.name !== null && meta.name !== "hive") report.add(COLMENA_OPTIONS, "meta.name");
  if (meta.description !== null && meta.description !== "A Colmena Hive") {
    report.add(COLMENA_OPTIONS, "meta.description");
  }
  if (meta.allowApplyAll === false) report.add(COLMENA_OPTIONS, "meta.allowApplyAll");
}
