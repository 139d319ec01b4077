// What an ssh_config gave a converted node's address: colmena and deploy-rs ran `ssh … ADDRESS`,
// so a `Host ADDRESS` block of the user's (an alias: HostName, Port, ProxyJump, IdentityFile…)
// applied. nixship reaches a node with a block of its own by the node's name (`Host NAME`,
// `HostName ADDRESS`), which that alias never matches: its settings go into the node's block,
// after the node's own (ssh keeps the first value, as the old tool's command line won over the
// config). `init --from` reads them with `ssh -G` (cli/ssh-aliases.ts). Pure.

/** The settings an ssh_config gives an address, as ssh_config lines of the node's block. */
export interface SshAlias {
  /** The machine ssh reaches for the address (its HostName). */
  readonly hostname: string;
  /** The other settings, as ssh_config lines ("Port 2201", "ProxyJump bastion"). */
  readonly lines: readonly string[];
}

/** `ssh -G` keys carried from an alias, and their ssh_config keywords. */
const CARRIED: ReadonlyMap<string, string> = new Map([
  ["port", "Port"],
  ["proxyjump", "ProxyJump"],
  ["proxycommand", "ProxyCommand"],
  ["identityfile", "IdentityFile"],
  ["identitiesonly", "IdentitiesOnly"],
  ["certificatefile", "CertificateFile"],
  ["hostkeyalias", "HostKeyAlias"],
]);

/** Keys whose value is a path: a word, quoted where it holds a space. */
const PATHS: ReadonlySet<string> = new Set(["identityfile", "certificatefile"]);

/** The most of `ssh -G`'s output read. */
const MAX_OUTPUT = 256 * 1024;

/**
 * What the config gave `address`: `withConfig` is `ssh -G ADDRESS` with the config the old tool
 * read, `bare` the same with none (`-F /dev/null`); what differs is the config's. Undefined when
 * it gave nothing carried (no alias), or a value no ssh_config line can hold.
 */
export function sshAliasOf(
  address: string,
  withConfig: string,
  bare: string,
): SshAlias | undefined {
  const given = settingsOf(withConfig);
  const plain = settingsOf(bare);
  const differs = (key: string) =>
    (given.get(key) ?? []).join("\n") !== (plain.get(key) ?? []).join("\n");
  const hostname = given.get("hostname")?.[0];
  const lines: string[] = [];
  for (const [key, keyword] of CARRIED) {
    if (!differs(key)) continue;
    for (const value of given.get(key) ?? []) {
      const line = lineOf(keyword, value, PATHS.has(key));
      if (line === undefined) return undefined;
      lines.push(line);
    }
  }
  const renamed = hostname !== undefined && differs("hostname") && hostname !== address;
  if (!renamed && lines.length === 0) return undefined;
  if (hostname !== undefined && !/^[A-Za-z0-9._:%[\]-]+$/.test(hostname)) return undefined;
  return { hostname: renamed ? (hostname as string) : address, lines };
}

/** `ssh -G`'s lines as each key's values, in order (a key such as identityfile repeats). */
function settingsOf(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const line of text.slice(0, MAX_OUTPUT).split("\n")) {
    const space = line.indexOf(" ");
    if (space <= 0) continue;
    const key = line.slice(0, space);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(space + 1).trim()]);
  }
  return settings;
}

/** One ssh_config line; undefined for a value no line can hold (a line break, a quote). */
function lineOf(keyword: string, value: string, path: boolean): string | undefined {
  if (value === "" || /[\n\r\0]/.test(value)) return undefined;
  if (!path || !/\s/.test(value)) return `${keyword} ${value}`;
  return value.includes('"') ? undefined : `${keyword} "${value}"`;
}
