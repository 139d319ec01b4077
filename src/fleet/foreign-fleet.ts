// What the importers of other deployers' fleets (colmena's hives, deploy-rs's nodes) share: the
// converted fleet, the report of what each option became (carried over, mapped, left behind and
// why), and the fleet written as a fleet file or as Nix for the flake. Pure.
import { InputError } from "../errors.js";
import {
  ADDRESS_MAX_LENGTH,
  ADDRESS_PATTERN,
  ADMIN_PLACEHOLDER,
  NAME_MAX_LENGTH,
  NAME_PATTERN,
} from "./fleet.js";
import type { JsonObject } from "./fleet-json.js";
import { formatNix, type NixValue, nixExpression } from "./nix-text.js";
import type { SshAlias } from "./ssh-alias.js";
import { SSH_OPTIONS_SET_BY_NIXSHIP } from "./ssh-options.js";

/** What became of an option: the same meaning in nixship, another shape, or nothing. */
export type Outcome = "carried" | "mapped" | "left";

/** An option of the other tool, and what nixship makes of it wherever it is set. */
export interface OptionFate {
  readonly outcome: Outcome;
  /** Carried or mapped: the counterpart; left behind: why, and what to do instead. */
  readonly text: string;
}

/** One line of the report: an option, what became of it, and the nodes that set it. */
export interface ReportEntry {
  readonly option: string;
  readonly outcome: Outcome;
  readonly text: string;
  readonly nodes: readonly string[];
}

/** The report, each option and fate said once with every node it applies to. */
export class Report {
  readonly #entries = new Map<string, { entry: ReportEntry; nodes: string[] }>();

  /** `option` (a key of `fates`) as it was set on `node` (none: the whole hive or flake). */
  add(fates: Readonly<Record<string, OptionFate>>, option: string, node?: string): void {
    const fate = fates[option];
    if (fate === undefined) throw new Error(`no fate for ${option}`);
    this.note(option, fate, node);
  }

  /** As `add`, with a fate of its own (an option's value decides it). */
  note(option: string, fate: OptionFate, node?: string): void {
    const key = `${option}\0${fate.outcome}\0${fate.text}`;
    let held = this.#entries.get(key);
    if (held === undefined) {
      held = { entry: { option, ...fate, nodes: [] }, nodes: [] };
      this.#entries.set(key, held);
    }
    if (node !== undefined && !held.nodes.includes(node)) held.nodes.push(node);
  }

  entries(): ReportEntry[] {
    return [...this.#entries.values()].map(({ entry, nodes }) => ({ ...entry, nodes }));
  }
}

/** How a host's system is named: as Nix in the flake's fleet, and as a fleet file's installable. */
export interface SystemRef {
  /** A Nix expression with `self` (and what `Conversion.nixLet` binds) in scope. */
  readonly nix: string;
  /** `.#ATTR` of the flake. */
  readonly installable: string;
}

export interface ForeignHost {
  readonly name: string;
  /** The fleet file's host keys but `system`. */
  readonly fields: JsonObject;
  readonly system: SystemRef;
  /** The host's own policy (`policies.NAME`); empty: none. */
  readonly policy: JsonObject;
}

/** A fleet converted from another tool, before the cache and key are added. */
export interface Conversion {
  readonly hosts: readonly ForeignHost[];
  /** The fleet's `ssh` section (user, configFile), empty when nixship's defaults do. */
  readonly ssh: JsonObject;
  /** The fleet's `build` section; null: none. */
  readonly build: JsonObject | null;
  /** The fleet's `secrets.entries`; null: none. */
  readonly secrets: JsonObject | null;
  /** Bindings the Nix fleet needs (`hive = nixshipLib.readColmenaHive …;`), and whether of nixship's lib. */
  readonly nixLet: readonly string[];
  readonly needsLib: boolean;
  /** An output the flake needs for the fleet file's installables (`nixshipHive = …;`); null: none. */
  readonly jsonOutputLine: string | null;
  /** The text of SSH_CONFIG_FILE, to write beside the fleet (its ssh.configFile); null: none. */
  readonly sshConfig: string | null;
  /**
   * The address of each block of SSH_CONFIG_FILE (its HostName as the node gave it): what the
   * user's ssh_config may alias, which `init --from` asks ssh about (ssh-alias.ts).
   */
  readonly blockAddresses: readonly string[];
  readonly report: readonly ReportEntry[];
  /** Commands left for the user (secrets to set), in order. */
  readonly next: readonly string[];
}

/** What every converted fleet gets besides its hosts. */
export interface ConversionSettings {
  readonly cacheUrl: string;
  readonly publicKey: string;
}

/** `secrets.admins` until the user names one: no recipient, so the fleet is refused until then. */

export function validHostName(name: string): boolean {
  return NAME_PATTERN.test(name) && name.length <= NAME_MAX_LENGTH;
}

/** Whether `text` is an address a fleet host may have (a hostname or an IP, as read-hosts.ts). */
export function validAddress(text: string): boolean {
  return ADDRESS_PATTERN.test(text) && text.length <= ADDRESS_MAX_LENGTH;
}

/**
 * Fails with every node that cannot be converted, at once (a hive of many nodes is fixed in one
 * round): one refusal as it is; several as one error, with the first's code, each refusal on a
 * line of its own, and the fixes they name.
 */
export function refuseNodes(where: string, refusals: readonly InputError[]): void {
  const [first] = refusals;
  if (first === undefined) return;
  if (refusals.length === 1) throw first;
  const hints = [...new Set(refusals.flatMap((r) => (r.hint === undefined ? [] : [r.hint])))];
  throw new InputError(
    first.code,
    `${where}: ${refusals.length} problems keep nodes from being converted:\n${refusals
      .map(
        (r) =>
          `  - ${r.message.startsWith(`${where}: `) ? r.message.slice(where.length + 2) : r.message}`,
      )
      .join("\n")}`,
    hints.length === 0 ? {} : { hint: hints.join("; ") },
  );
}

/** The fleet file (`nixship.json`). */
export function conversionJson(conversion: Conversion, settings: ConversionSettings): JsonObject {
  const hosts: JsonObject = {};
  const policies: JsonObject = {};
  for (const host of conversion.hosts) {
    hosts[host.name] = { ...host.fields, system: host.system.installable };
    if (Object.keys(host.policy).length > 0) policies[host.name] = host.policy;
  }
  return {
    cache: { url: settings.cacheUrl, publicKeys: [settings.publicKey] },
    ...(Object.keys(conversion.ssh).length > 0 ? { ssh: conversion.ssh } : {}),
    ...(conversion.build === null ? {} : { build: conversion.build }),
    ...(Object.keys(policies).length > 0 ? { policies } : {}),
    ...(conversion.secrets === null
      ? {}
      : { secrets: { admins: [ADMIN_PLACEHOLDER], entries: conversion.secrets } }),
    hosts,
  };
}

/** The fleet as Nix for the flake (`nixship.nix`): a function of `self` (and nixship's lib). */
export function conversionNix(
  conversion: Conversion,
  settings: ConversionSettings,
  header: readonly string[],
): string {
  const { hosts: _, ...rest } = conversionJson(conversion, settings);
  const hosts: Record<string, NixValue> = {};
  for (const host of conversion.hosts) {
    hosts[host.name] = {
      system: nixExpression(host.system.nix),
      ...(host.fields as Record<string, NixValue>),
    };
  }
  const fleet = formatNix({ ...(rest as Record<string, NixValue>), hosts });
  const args = conversion.needsLib ? "{ self, nixshipLib, ... }:" : "{ self, ... }:";
  const lets =
    conversion.nixLet.length > 0 ? ["let", ...conversion.nixLet.map((l) => `  ${l}`), "in"] : [];
  return `${[...header.map((l) => `# ${l}`), args, ...lets, fleet].join("\n")}\n`;
}

/**
 * The ssh_config init writes beside a converted fleet for the hosts' own blocks, named by the
 * fleet's ssh.configFile (relative paths in a fleet are its directory's), so the fleet reaches
 * each host as written, without a block pasted by hand.
 */
export const SSH_CONFIG_FILE = "nixship-ssh_config";

/**
 * The converted fleet's ssh settings: `ssh` with SSH_CONFIG_FILE as its configFile when any host
 * has a block, and that file's text. Given `-F`, ssh reads no other file, so the file includes,
 * after the blocks (ssh keeps the first value it reads), what ssh read before: `replaced` (the
 * ssh_config the old tool was given), else ssh's own files. `Match all` ends the last block: an
 * Include inside a `Host` block would apply to that host only.
 */
export function withSshConfig(
  ssh: JsonObject,
  given: readonly string[],
  replaced: string | undefined,
  aliasing: { readonly aliases: ReadonlyMap<string, SshAlias>; readonly report: Report },
): {
  readonly ssh: JsonObject;
  readonly sshConfig: string | null;
  readonly blockAddresses: readonly string[];
} {
  if (given.length === 0) return { ssh, sshConfig: null, blockAddresses: [] };
  const blockAddresses = given.map(addressOf);
  const blocks = given.map((block) => withAlias(block, aliasing.aliases, aliasing.report));
  const includes =
    replaced === undefined
      ? ["Include ~/.ssh/config", "Include /etc/ssh/ssh_config"]
      : [`Include ${sshConfigWord(replaced)}`];
  const text = [
    "# The fleet's ssh.configFile, written by 'nixship init --from': each host's ssh settings",
    "# in a block of its own (hosts.NAME.sshHost names it), then the ssh_config ssh read before,",
    "# which -F would otherwise leave unread. Edit it as any ssh_config.",
    "",
    ...blocks.flatMap((block) => [block, ""]),
    "Match all",
    ...includes.map((line) => `  ${line}`),
  ];
  return {
    ssh: { ...ssh, configFile: `./${SSH_CONFIG_FILE}` },
    sshConfig: `${text.join("\n")}\n`,
    blockAddresses,
  };
}

/** The address a block (sshConfigBlock) names: its HostName line's. */
function addressOf(block: string): string {
  return /^ {2}HostName (\S+)$/m.exec(block)?.[1] ?? "";
}

/**
 * `block` with what the user's ssh_config gave its address (`aliases`, ssh-alias.ts): the
 * machine it names as HostName, and the alias's other settings after the node's own (ssh keeps
 * the first value: the node's options won over the config on the old tool's command line too).
 * Said in the report, on the block's host.
 */
function withAlias(block: string, aliases: ReadonlyMap<string, SshAlias>, report: Report): string {
  const address = addressOf(block);
  const alias = aliases.get(address);
  if (alias === undefined) return block;
  const name = /^Host (\S+)/.exec(block)?.[1] ?? address;
  const lines = block.split("\n");
  const carried = [`HostName ${alias.hostname}`, ...alias.lines];
  report.note(
    "ssh_config",
    {
      outcome: "carried",
      text: `${address} is a Host of the ssh_config the old tool read: its settings go into the host's block of ${SSH_CONFIG_FILE} (${carried.join(", ")}), which ssh finds by the host's name`,
    },
    name,
  );
  return [
    ...lines.map((l) => (l === `  HostName ${address}` ? `  HostName ${alias.hostname}` : l)),
    ...alias.lines.map((l) => `  ${l}`),
  ].join("\n");
}

/** A path as one ssh_config word, in double quotes (a space stays in it); ssh quotes no `"`. */
function sshConfigWord(path: string): string {
  if (/["\n\r\0]/.test(path)) {
    throw new InputError(
      "bad-ssh-config-file",
      `SSH_CONFIG_FILE: ${JSON.stringify(path)} holds a double quote or a line break, which ssh_config cannot quote`,
      { hint: "rename the file, or convert without SSH_CONFIG_FILE and add its settings by hand" },
    );
  }
  return `"${path}"`;
}

/**
 * ssh_config lines for the host `name` at `address`, as a block of SSH_CONFIG_FILE. The block is the
 * host's own (`Host NAME`, `HostName ADDRESS`, its lines), and the host is given `sshHost: NAME`
 * (the converters do): a block keyed by the address would be matched by every node that shares
 * it (machines behind one address on different ports), and ssh takes the first, so one node's
 * system would go to another's machine.
 */
export function sshConfigBlock(name: string, address: string, lines: readonly string[]): string {
  return [`Host ${name}`, ...[`HostName ${address}`, ...lines].map((l) => `  ${l}`)].join("\n");
}

/**
 * Gives each host whose ssh destination (its sshHost, else its address) is the name of another
 * host's block a block of its own, adding to `blocks`: ssh matches `Host` against the name it is
 * given, so that host would be reached at the other's address and port, and its system
 * activated on the other's machine (a node `web1-new` at `web1` beside a node `web1` with a
 * port of its own).
 */
export function unshadowHosts(
  hosts: readonly ForeignHost[],
  blocks: string[],
  report: Report,
): void {
  const named = new Set(blocks.map((b) => /^Host (\S+)/.exec(b)?.[1]));
  // A block added may shadow another host in turn: until none does (each host once at most).
  for (let changed = true; changed; ) {
    changed = false;
    for (const host of hosts) {
      const address = host.fields.address;
      if (host.fields.sshHost !== undefined || typeof address !== "string") continue;
      if (!named.has(address) || named.has(host.name)) continue;
      blocks.push(sshConfigBlock(host.name, address, []));
      (host.fields as Record<string, unknown>).sshHost = host.name;
      named.add(host.name);
      changed = true;
      report.note(
        "address",
        {
          outcome: "mapped",
          text: `${address} is another host's name in ${SSH_CONFIG_FILE}: given a block of its own (Host ${host.name}, HostName ${address}), so that ssh reaches ${address} and not that host`,
        },
        host.name,
      );
    }
  }
}

/**
 * What ssh options given on the command line would be as ssh_config lines for `host` (the
 * fleet's ssh.configFile is where nixship takes them): `-p`, `-i`, `-J`, `-o K=V`; anything
 * else is named as not carried. A user (`-l U`, `-o User=U`) is no line: nixship names the
 * user on its own command line (`-l`), which would win over ssh_config; it is given back as
 * `user`, for the fleet's own setting.
 */
export function sshOptionsAsConfig(options: readonly string[]): {
  lines: string[];
  unknown: string[];
  /** `-o` settings of keywords nixship gives ssh itself (SSH_OPTIONS_SET_BY_NIXSHIP). */
  overridden: string[];
  /** Options no line of the host's block may carry, each with why (ssh would refuse the file). */
  refused: string[];
  user?: string;
} {
  const lines: string[] = [];
  const unknown: string[] = [];
  const overridden: string[] = [];
  const refused: string[] = [];
  let user: string | undefined;
  const flags: Record<string, string> = {
    "-p": "Port",
    "-i": "IdentityFile",
    "-J": "ProxyJump",
    "-F": "Include",
  };
  for (let i = 0; i < options.length; i++) {
    const option = options[i] as string;
    const attached = option.match(/^(-[piJlFo])(.+)$/s);
    const flag = attached?.[1] ?? option;
    const value = attached?.[2] ?? options[i + 1];
    const takesValue = flag === "-o" || flag === "-l" || flags[flag] !== undefined;
    // A line break (or any control character) would make a line of its own in the printed
    // block: no ssh_config line carries one. Quoted, the report shows it on its one line.
    if (takesValue && value !== undefined && CONTROL.test(value)) {
      unknown.push(attached ? JSON.stringify(option) : `${option} ${JSON.stringify(value)}`);
      if (!attached) i++;
      continue;
    }
    if (flag === "-o" && value !== undefined) {
      // ssh takes `Key=Value` and `Key Value` alike.
      const [, key = "", rest = ""] = /^\s*([^\s=]+)\s*(?:=\s*|\s+)?(.*)$/.exec(value) ?? [];
      const ours = SSH_OPTIONS_SET_BY_NIXSHIP.find((k) => k.toLowerCase() === key.toLowerCase());
      // OpenSSH keeps the first user it is given.
      if (key.toLowerCase() === "user") user ??= rest.trim();
      else if (ours !== undefined) overridden.push(`${ours} ${rest}`.trim());
      // ssh refuses these on its command line; in the host's block, one would start another
      // block (every line after it another host's) or read another file for this host.
      else if (!/^[A-Za-z]+$/.test(key) || /^(host|match|include)$/i.test(key)) {
        refused.push(
          `-o ${JSON.stringify(value)}: ssh takes no Host, Match or Include (nor a keyword that is not a word) on its command line, and in the host's block one would start a block of its own or read another file`,
        );
        if (!attached) i++;
        continue;
      } else lines.push(`${key} ${rest}`.trim());
    } else if (flag === "-l" && value !== undefined) {
      user ??= value;
    } else if (flags[flag] !== undefined && value !== undefined) {
      const line = flagLine(flags[flag] as string, value);
      if (line === undefined) {
        refused.push(
          `${flag} ${JSON.stringify(value)}: ${flag === "-p" ? "not a port from 1 to 65535" : "empty, or with a double quote no ssh_config line can carry"}`,
        );
        if (!attached) i++;
        continue;
      }
      lines.push(line);
    } else {
      unknown.push(CONTROL.test(option) ? JSON.stringify(option) : option);
      continue;
    }
    if (attached === null || attached === undefined) i++;
  }
  return { lines, unknown, overridden, refused, ...(user === undefined ? {} : { user }) };
}

/**
 * The ssh_config line of a flag's one argument (`-p 2222`, `-i PATH`): a port from 1 to 65535,
 * a word with spaces in double quotes; undefined for what no line can carry (a port that is not
 * one, a double quote): ssh refuses the whole file for one bad line, every host's.
 */
function flagLine(keyword: string, value: string): string | undefined {
  if (keyword === "Port") {
    return /^[0-9]{1,5}$/.test(value) && Number(value) >= 1 && Number(value) <= 65535
      ? `Port ${Number(value)}`
      : undefined;
  }
  if (value === "" || value.includes('"')) return undefined;
  return /\s/.test(value) ? `${keyword} "${value}"` : `${keyword} ${value}`;
}

/** Control characters: none is in an ssh_config line, or in one line of a report. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are what is looked for
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * What became of a node's ssh command-line options (sshOptionsAsConfig), said under `option`:
 * its user (to give in `userOption`), the lines mapped into a block of the host's own
 * (`mappedText`, then the lines), what has no ssh_config counterpart, and what nixship gives ssh
 * itself. The mapped lines, for the caller's block of the host (`sshConfigBlock`, `sshHost`).
 */
export function noteSshOptions(
  report: Report,
  option: string,
  node: { readonly name: string; readonly address: string },
  options: readonly string[],
  how: { readonly mappedText: string; readonly userOption: string },
): readonly string[] {
  const { lines, unknown, overridden, refused, user } = sshOptionsAsConfig(options);
  const left = (text: string) => report.note(option, { outcome: "left", text }, node.name);
  if (user !== undefined) {
    left(
      `the user ${user}: nixship names the ssh user itself, which would win over an ssh_config line: give it as ${how.userOption} (hosts.NAME.sshUser) and convert again`,
    );
  }
  if (lines.length > 0) {
    report.note(
      option,
      { outcome: "mapped", text: `${how.mappedText}: ${lines.join(", ")}` },
      node.name,
    );
  }
  if (unknown.length > 0) left(`${unknown.join(" ")}: no ssh_config counterpart nixship knows`);
  // One bad line and ssh refuses the whole file: every host of the fleet would be unreachable.
  for (const why of refused) left(why);
  if (overridden.length > 0) {
    left(
      `${overridden.join(", ")}: nixship gives ssh this itself on its command line, which wins over ssh_config`,
    );
  }
  return lines;
}
