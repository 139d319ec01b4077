// What ssh itself would do for a host, asked without connecting: its effective settings
// (`ssh -G`), and the host key the deployer already trusts for it (`ssh-keygen -F` over the
// known_hosts files ssh would read, hashed entries included). Both are local and bounded.
// The settings of many hosts are read by one small shell (`prefetchSshSettings`), so that the
// deployer, a large process whose every fork holds up its event loop, forks once for a wave
// rather than once per host.
import { homedir } from "node:os";
import { pipedShellInput } from "../util/piped-shell-input.js";
import { runCommand } from "../util/run.js";
import { shellQuote } from "../util/shell-quote.js";
import { type SshTarget, sshArgs } from "./ssh-transport.js";

/** Seconds `ssh -G` or `ssh-keygen -F` may take (both are local). */
const LOCAL_TIMEOUT = 10;
const MAX_OUTPUT = 64_000;
/** Hosts whose settings one shell reads at most (about 3 kB of output each). */
const PREFETCH_BATCH = 128;
/** Seconds one shell may take beyond LOCAL_TIMEOUT, per host it reads. */
const PREFETCH_SECONDS_EACH = 0.25;
/** The line the shell writes after each host's settings; no setting starts with "@". */
const END_MARK = "@nixship-end";

/** `ssh -G`'s arguments and destination for the target, and the key they are kept under. */
function settingsQuery(target: SshTarget): { args: string[]; destination: string; key: string } {
  const args = sshArgs(target, { fresh: true });
  const destination = args.pop() as string;
  return { args, destination, key: JSON.stringify([...args, destination]) };
}

/** Settings read ahead for targets about to be used, each taken once (see sshSettings). */
const prefetched = new Map<string, Promise<Map<string, string> | undefined>>();

/**
 * ssh's effective settings for the target (lowercase keys, first value wins, as ssh reads them):
 * those prefetchSshSettings read for it, taken once, or else its own `ssh -G`.
 */
export async function sshSettings(target: SshTarget): Promise<Map<string, string>> {
  const { args, destination, key } = settingsQuery(target);
  const ahead = prefetched.get(key);
  if (ahead !== undefined) {
    prefetched.delete(key);
    const settings = await ahead;
    if (settings !== undefined) return settings;
  }
  return resolvedSettings(args, destination, `read ssh's settings for ${target.name}`);
}

/**
 * Reads ssh's settings for the targets ahead of their sshSettings: one shell runs `ssh -G` for
 * up to PREFETCH_BATCH of them, instead of one fork of this process each. Never rejects: a
 * target whose settings the shell did not give is read on its own when asked. What is read is
 * used once, and what was not used is dropped by the function returned, so a long-running
 * process never keeps settings from before an ssh_config changed.
 */
export function prefetchSshSettings(targets: readonly SshTarget[]): () => void {
  const queries = new Map<string, ReturnType<typeof settingsQuery>>();
  for (const target of targets) {
    const query = settingsQuery(target);
    if (!prefetched.has(query.key)) queries.set(query.key, query);
  }
  const all = [...queries.values()];
  const mine = new Map<string, Promise<Map<string, string> | undefined>>();
  for (let i = 0; i < all.length; i += PREFETCH_BATCH) {
    const batch = all.slice(i, i + PREFETCH_BATCH);
    const read = readSettingsOfMany(batch);
    batch.forEach((query, n) => {
      mine.set(
        query.key,
        read.then((each) => each[n]),
      );
    });
  }
  for (const [key, settings] of mine) prefetched.set(key, settings);
  return () => {
    for (const [key, settings] of mine)
      if (prefetched.get(key) === settings) prefetched.delete(key);
  };
}

/** One shell's `ssh -G` for each query, in order; undefined for those it did not give. */
async function readSettingsOfMany(
  queries: readonly { args: readonly string[]; destination: string }[],
): Promise<(Map<string, string> | undefined)[]> {
  const script = queries
    .map(({ args, destination }) =>
      [
        `ssh ${[...args, "-G", destination].map(shellQuote).join(" ")} 2>/dev/null`,
        `printf '\\n%s\\n' ${END_MARK}`,
      ].join("\n"),
    )
    .join("\n");
  const seconds = LOCAL_TIMEOUT + PREFETCH_SECONDS_EACH * queries.length;
  const r = await runCommand("sh", ["-s"], {
    input: pipedShellInput(`${script}\n`),
    purpose: "read ssh's settings for the hosts",
    signal: AbortSignal.timeout(seconds * 1000),
  }).catch(() => undefined);
  const parts = r?.stdout.slice(0, MAX_OUTPUT * queries.length).split(`\n${END_MARK}\n`) ?? [];
  // Each part before an end mark is a host's; what follows the last mark is no host's.
  return queries.map((_, n) => (n < parts.length - 1 ? parseSettings(parts[n] ?? "") : undefined));
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
  return parseSettings(r.stdout);
}

/** `ssh -G`'s output as settings (the first value of each key), its first MAX_OUTPUT read. */
function parseSettings(text: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const line of text.slice(0, MAX_OUTPUT).split("\n")) {
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
