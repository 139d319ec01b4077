// `init --from`'s question to ssh: what the ssh_config the old tool read gives each address a
// converted node gets a block for (fleet/ssh-alias.ts). `ssh -G ADDRESS` with that config (the
// file colmena was given, else ssh's own files) and with none; both local, bounded.
import { type SshAlias, sshAliasOf } from "../fleet/ssh-alias.js";
import { mapLimit } from "../util/pool.js";
import { runCommand } from "../util/run.js";

/** Seconds one `ssh -G` may take (it reads files; nothing leaves the machine). */
const RESOLVE_TIMEOUT = 10;
/** `ssh -G`s at once. */
const AT_ONCE = 8;

/**
 * Each of `addresses` that the config aliases, with what it gives it. An address ssh cannot
 * resolve (its config refused) is left as it is: the conversion keeps the node's address.
 */
export async function readSshAliases(
  addresses: readonly string[],
  configFile: string | undefined,
): Promise<Map<string, SshAlias>> {
  const distinct = [...new Set(addresses)].filter((a) => a !== "" && !a.startsWith("-"));
  const resolve = async (config: readonly string[], address: string) => {
    const r = await runCommand("ssh", [...config, "-G", address], {
      okCodes: [0, 255],
      purpose: `ask ssh what its config gives ${address}`,
      signal: AbortSignal.timeout(RESOLVE_TIMEOUT * 1000),
    });
    return r.code === 0 ? r.stdout : undefined;
  };
  const found = await mapLimit(distinct, AT_ONCE, async (address) => {
    const [given, bare] = await Promise.all([
      resolve(configFile === undefined ? [] : ["-F", configFile], address),
      resolve(["-F", "/dev/null"], address),
    ]);
    return given === undefined || bare === undefined ? undefined : sshAliasOf(address, given, bare);
  });
  const aliases = new Map<string, SshAlias>();
  distinct.forEach((address, i) => {
    const alias = found[i];
    if (alias !== undefined) aliases.set(address, alias);
  });
  return aliases;
}
