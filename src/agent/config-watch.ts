// The agent's config, looked at again before each poll: a NixOS switch rewrites
// /etc/nixship/agent.json and leaves the running agent be (it may be running that very switch),
// so a key dropped from the config (a leaked one) would stay trusted until a restart. Its keys
// are taken as they change; what else changed applies at the next start, and a warning says so.
import { stat } from "node:fs/promises";
import { parsePublicKey } from "../nix/keys.js";
import type { AgentTrust } from "./agent.js";
import { AGENT_CONFIG_KEYS, type AgentConfig } from "./config.js";

/** The fields only a restart applies (the store and channel it follows, where it keeps state…). */
const RESTART_FIELDS = AGENT_CONFIG_KEYS.filter(
  (k) => k !== "releaseKeys" && k !== "cacheKeys",
) as readonly (keyof AgentConfig)[];

/**
 * The config at `path`, and a `trustNow` for the agent: the config's keys once the file changed
 * since this read (its inode, size or modification time), else undefined. A config that no
 * longer reads keeps the keys trusted now, and `warn` says why once per version of the file.
 */
export async function watchedConfig(
  path: string,
  read: (path: string) => Promise<AgentConfig>,
  warn: (message: string) => void,
): Promise<{ config: AgentConfig; trustNow: () => Promise<AgentTrust | undefined> }> {
  // Looked at before the read: a change made while it reads is taken at the first poll.
  let seen = await versionOf(path);
  const config = await read(path);
  const trustNow = async (): Promise<AgentTrust | undefined> => {
    const version = await versionOf(path);
    if (version === seen) return undefined;
    seen = version;
    let now: AgentConfig;
    let trust: AgentTrust;
    try {
      now = await read(path);
      trust = {
        releaseKeys: now.releaseKeys.map((k) => parsePublicKey(k)),
        cacheKeys: now.cacheKeys,
      };
    } catch (err) {
      warn(
        `the config ${path} changed and does not read (${err instanceof Error ? err.message : String(err)}); the keys trusted stay as they were`,
      );
      return undefined;
    }
    const changed = RESTART_FIELDS.filter((f) => now[f] !== config[f]);
    if (changed.length > 0) {
      warn(
        `the config ${path} changed ${changed.join(", ")}, which apply when the agent starts again (systemctl restart nixship-agent); its keys apply now`,
      );
    }
    return trust;
  };
  return { config, trustNow };
}

async function versionOf(path: string): Promise<string> {
  const info = await stat(path).catch(() => undefined);
  return info === undefined ? "absent" : `${info.ino}:${info.size}:${info.mtimeMs}`;
}
