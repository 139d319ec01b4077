// What ssh itself would do for a host, asked without connecting: its effective settings
// (`ssh -G`), and the host key the deployer already trusts for it (`ssh-keygen -F` over the
// known_hosts files ssh would read, hashed entries included). Both are local and bounded.
import { homedir } from "node:os";
import { runCommand } from "../util/run.js";
import { type SshTarget, sshArgs } from "./ssh-transport.js";

/** Seconds `ssh -G` or `ssh-keygen -F` may take (both are local). */
const LOCAL_TIMEOUT = 10;
const MAX_OUTPUT = 64_000;

/** ssh's effective settings for the target (lowercase keys, first value wins, as ssh reads them). */
export function sshSettings(target: SshTarget): Promise<Map<string, string>> {
  const args = sshArgs(target, { fresh: true });
  const destination = args.pop() as string;
  return resolvedSettings(args, destination, `read ssh's settings for ${target.name}`);
}

/** What `ssh ARGS -G DESTINATION` prints, as settings (see sshSettings); local and bounded. */
export async function resolvedSettings(
  args: readonly string[],
  destination: string,
  purpose: string,
): Promise<Map<string, string>> {
  const r = await runCommand("ssh", [...args, "-G", destination], {
    okCodes: [0, 255],
    purpose,
    signal: AbortSignal.timeout(LOCAL_TIMEOUT * 1000),
  });
  const settings = new Map<string, string>();
  for (const line of r.stdout.slice(0, MAX_OUTPUT).split("\n")) {
    const space = line.indexOf(" ");
    if (space > 0 && !settings.has(line.slice(0, space))) {
      settings.set(line.slice(0, space), line.slice(space + 1).trim());
    }
  }
  return settings;
}

/**
 * The target's ssh-ed25519 host key (`ssh-ed25519 BASE64`) from the known_hosts files ssh
 * checks it against; undefined when none of them holds one.
 */
export async function trustedHostKey(target: SshTarget): Promise<string | undefined> {
  const settings = await sshSettings(target);
  const name = settings.get("hostkeyalias") ?? settings.get("hostname") ?? target.destination;
  const port = settings.get("port") ?? "22";
  const lookup = port === "22" ? name : `[${name}]:${port}`;
  const files = [
    ...(settings.get("userknownhostsfile") ?? "").split(/\s+/),
    ...(settings.get("globalknownhostsfile") ?? "").split(/\s+/),
  ]
    .filter((f) => f !== "" && f !== "/dev/null")
    .map((f) => (f.startsWith("~/") ? `${homedir()}${f.slice(1)}` : f));
  for (const file of files) {
    const r = await runCommand("ssh-keygen", ["-F", lookup, "-f", file], {
      okCodes: [0, 1, 255],
      purpose: `look up ${target.name}'s host key in ${file}`,
      signal: AbortSignal.timeout(LOCAL_TIMEOUT * 1000),
    });
    for (const line of r.stdout.slice(0, MAX_OUTPUT).split("\n")) {
      if (line.startsWith("#") || line.trim() === "") continue;
      const fields = line.trim().split(/\s+/);
      // hosts keytype key [comment]; a marked line (@revoked, @cert-authority) is no host key.
      if (fields[0]?.startsWith("@")) continue;
      if (fields[1] === "ssh-ed25519" && fields[2]) return `ssh-ed25519 ${fields[2]}`;
    }
  }
  return undefined;
}
