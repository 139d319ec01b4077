// Before the agent starts following a channel: is its host name one the channel's releases
// use? A host whose name no release ever named (a machine's hostname that is not its fleet
// name, say) would otherwise follow nothing and look healthy; it is refused instead.
import { join } from "node:path";
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { SignedHead } from "../release/release.js";
import { trustedHead } from "../release/release-sign.js";
import { channelKey, readChannel } from "../release/release-store.js";
import { readHostEntry } from "../release/shard-store.js";
import { readSignedHead } from "../release/signed-release-reads.js";
import type { ObjectStore } from "../store/object-store.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { readFileBounded } from "../util/bounded-file.js";

/** Releases before the current one that are read, at most, for one that names the host. */
export const NAMED_HISTORY = 50;

/**
 * Resolves when `host` has an entry in the channel's current release or in one of the
 * NAMED_HISTORY releases before it, or when the channel has no release yet; otherwise throws
 * InputError `host-not-in-channel`. Releases that do not verify are passed over, and so is one
 * whose own shard the agent would refuse (readHostEntry reads and checks it).
 */
export async function checkHostNamed(
  store: ObjectStore,
  channel: string,
  host: string,
  keys: readonly PublicKey[],
): Promise<void> {
  const read = await readChannel(store, channel);
  if (read.status !== "found") return;
  const current = trustedHead(read.bytes, keys, channelKey(channel));
  // A channel that does not verify says nothing about names: the agent refuses it when it polls.
  if (current === undefined || (await names(store, current, host))) return;
  const { seq } = current.head;
  const oldest = Math.max(1, seq - NAMED_HISTORY);
  for (let s = seq - 1; s >= oldest; s--) {
    const older = await readSignedHead(store, channel, s, keys);
    if (typeof older !== "string" && (await names(store, older, host))) return;
  }
  const listed = Object.keys(current.hosts ?? {}).sort();
  const shown = listed.slice(0, 10).join(", ") + (listed.length > 10 ? ", …" : "");
  throw new InputError(
    "host-not-in-channel",
    `agent: no release of channel "${channel}" names this host "${host}" (release ${seq}, the current one, and the ${seq - oldest} before it)`,
    {
      hint: `set "host" in the agent's config to the host's name in the fleet file, or pass --host NAME${listed.length > 0 ? `; release ${seq} names ${shown}` : ""}`,
    },
  );
}

/** The file in the agent's state directory that says a check passed, for which channel and host. */
export const NAMED_FILE = "host-named";

/**
 * checkHostNamed, once for a channel and host: once one passed with a release that names the
 * host, the state directory says so, and the agent's later starts (systemd restarts it after
 * every exit) read no releases for it. A channel without a release yet proves nothing: checked
 * again at the next start.
 */
export async function checkHostNamedOnce(
  store: ObjectStore,
  channel: string,
  host: string,
  keys: readonly PublicKey[],
  stateDir: string,
): Promise<void> {
  const file = join(stateDir, NAMED_FILE);
  const mark = `${JSON.stringify({ channel, host })}\n`;
  // A mark that cannot be read (too large, not a file) is no mark: the check runs again.
  const seen = await readFileBounded(file, 4096, () => new Error("too large")).catch(
    () => undefined,
  );
  if (seen?.toString("utf8") === mark) return;
  if ((await readChannel(store, channel)).status !== "found") return;
  await checkHostNamed(store, channel, host, keys);
  await writeFileAtomically(file, mark, 0o600);
}

/** Whether the release names `host`; a shard that is missing or changed names no one. */
async function names(store: ObjectStore, head: SignedHead, host: string): Promise<boolean> {
  try {
    return (await readHostEntry(store, head, host)) !== undefined;
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return false;
  }
}
