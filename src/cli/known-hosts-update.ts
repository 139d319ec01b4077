// `fleet from-terraform --known-hosts`: the ssh hosts' keys (Terraform's output, else what each
// host published to the store) merged into a known_hosts file, read and written bounded.

import { stat } from "node:fs/promises";
import { InputError, OperationError } from "../errors.js";
import { type FleetFromTerraform, REPLACE_HOST_KEYS_FLAG } from "../fleet/from-terraform.js";
import {
  HostKeyChangedError,
  type HostKeyEntry,
  type KnownHostsMerge,
  mergeKnownHosts,
} from "../fleet/known-hosts.js";
import { hostKeyObjectKey, readPublishedHostKeyObject } from "../status/host-key-store.js";
import { openStore } from "../store/url.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { readFileBounded } from "../util/bounded-file.js";
import { errnoWords, isPathFault } from "../util/errno-words.js";
import { namesShown } from "../util/names-shown.js";
import { mapLimit } from "../util/pool.js";
import { outputTarget } from "./output-file.js";

/** Seconds all the published host keys may take to read from the store. */
export const STORE_READ_TIMEOUT = 30;
/** Published host keys read at once. */
const STORE_READS = 8;
/** A known_hosts file larger than this is not read. */
const KNOWN_HOSTS_LIMIT = 8 * 1024 * 1024;

export interface KnownHostsUpdate {
  /** As given on the command line. */
  readonly file: string;
  readonly merge: KnownHostsMerge;
  /**
   * Hosts with no key from Terraform and none published in the store yet, or (`unusable`: why)
   * an object there that holds no usable key.
   */
  readonly pending: readonly { readonly host: string; readonly unusable?: string }[];
  readonly store: string;
}

/** The ssh hosts' keys (Terraform's, else the store's) merged into the known_hosts file. */
export async function knownHostsUpdate(
  file: string,
  made: FleetFromTerraform,
  replace: boolean,
): Promise<KnownHostsUpdate> {
  const store = made.fleet.cache?.url as string;
  const missing = made.hostKeys.filter((h) => h.key === undefined).map((h) => h.host);
  const published = missing.length === 0 ? new Map() : await readPublishedKeys(store, missing);
  const entries: HostKeyEntry[] = [];
  const pending: { host: string; unusable?: string }[] = [];
  for (const { host, names, key } of made.hostKeys) {
    const read = published.get(host);
    const found = key ?? read?.key;
    if (found === undefined) {
      pending.push({ host, ...(read?.unusable === undefined ? {} : { unusable: read.unusable }) });
    } else {
      entries.push({
        host,
        names,
        key: found,
        source:
          key === undefined
            ? `the store (${hostKeyObjectKey(host)})`
            : "Terraform's output ssh_host_public_key",
      });
    }
  }
  const existing = await readKnownHosts(file);
  const merged = mergeKnownHosts(existing, entries, { replaceChanged: replace, file });
  if ("conflicts" in merged)
    throw new HostKeyChangedError(merged.conflicts, REPLACE_HOST_KEYS_FLAG);
  return { file, merge: merged.merge, pending, store };
}

/**
 * What hosts published to the store, by host (absent: nothing yet): a key, or why the object
 * holds none. Bounded:
 * each object is small (host-key-store reads at most a few KiB), and all of them together
 * may take STORE_READ_TIMEOUT seconds.
 */
async function readPublishedKeys(
  url: string,
  hosts: readonly string[],
): Promise<Map<string, { readonly key?: string; readonly unusable?: string }>> {
  const store = await openStore(url);
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new OperationError(
              "host-key-read-timeout",
              `reading the published SSH host keys of ${namesShown(hosts, HOSTS_NAMED)} from ${url} took over ${STORE_READ_TIMEOUT} s`,
              {
                hint: "check the store's address and that your credentials may read status/host-keys/",
              },
            ),
          ),
        STORE_READ_TIMEOUT * 1000,
      );
    });
    const reading = mapLimit(hosts, STORE_READS, (host) => readPublishedHostKeyObject(store, host));
    // Past the time limit, the reads still running end with the store: no one waits for them.
    reading.catch(() => {});
    const keys = await Promise.race([reading, timeout]);
    const found = new Map<string, { readonly key?: string; readonly unusable?: string }>();
    hosts.forEach((host, i) => {
      const key = keys[i];
      if (key !== undefined) found.set(host, key);
    });
    return found;
  } finally {
    clearTimeout(timer);
    await store.close();
  }
}

/** The known_hosts file's text; undefined when there is none yet. */
async function readKnownHosts(file: string): Promise<string | undefined> {
  try {
    const bytes = await readFileBounded(
      file,
      KNOWN_HOSTS_LIMIT,
      (size) =>
        new InputError(
          "known-hosts-too-large",
          `${file} is ${size} bytes, more than a known_hosts file of ${KNOWN_HOSTS_LIMIT} bytes`,
        ),
    );
    return bytes?.toString("utf8");
  } catch (err) {
    if (err instanceof InputError) throw err;
    // A path that is wrong (a directory, not allowed) is bad input; the machine's fault is not.
    const Fault = isPathFault(err) ? InputError : OperationError;
    throw new Fault("known-hosts-unreadable", `cannot read ${file}: ${errnoWords(err)}`, {
      cause: err,
      hint: "--known-hosts names the known_hosts file to update (made when it is not there)",
    });
  }
}

/**
 * Replaces the known_hosts file atomically, keeping its mode; through a symbolic link (as
 * dotfile managers make ~/.ssh/known_hosts), the file it names is replaced, not the link.
 */
export async function writeKnownHosts(file: string, text: string): Promise<void> {
  const target = await outputTarget(file);
  const mode = await stat(target).then(
    (s) => s.mode & 0o7777,
    () => 0o644,
  );
  try {
    await writeFileAtomically(target, text, mode);
  } catch (err) {
    throw new OperationError(
      "output-unwritable",
      `cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { cause: err },
    );
  }
}

export function reportKnownHosts(known: KnownHostsUpdate, stderr: NodeJS.WritableStream): void {
  const by = (change: string) =>
    known.merge.hosts.filter((h) => h.change === change).map((h) => h.host);
  const parts = (["added", "updated", "replaced", "unchanged"] as const)
    .map((change) => [change, by(change)] as const)
    .filter(([, hosts]) => hosts.length > 0)
    .map(([change, hosts]) => `${change} ${namesShown(hosts, HOSTS_NAMED)}`);
  const what = known.merge.changed ? "wrote" : "left";
  const all = known.merge.hosts.length > HOSTS_NAMED ? " (--json lists every host)" : "";
  if (parts.length > 0) stderr.write(`${what} ${known.file}: ${parts.join("; ")}${all}\n`);
  const keyless = known.pending.filter((p) => p.unusable === undefined).map((p) => p.host);
  const refusal = (hosts: string) => `until then, nixship refuses to reach ${hosts} over ssh`;
  if (keyless.length > PENDING_NOTED) {
    stderr.write(
      `note: ${keyless.length} hosts have no SSH host key yet: ${namesShown(keyless, HOSTS_NAMED)}: no ssh_host_public_key in Terraform's output, and nothing under ${hostKeyObjectKey("HOST")} in ${known.store}. Each publishes its key when it first boots; run this again then (${refusal("them")})\n`,
    );
  } else {
    for (const host of keyless) {
      stderr.write(
        `note: ${host} has no SSH host key yet: no ssh_host_public_key in Terraform's output, and nothing at ${hostKeyObjectKey(host)} in ${known.store}. It publishes its key when it first boots; run this again then (${refusal(host)})\n`,
      );
    }
  }
  const unusable = known.pending.filter((p) => p.unusable !== undefined);
  for (const { host, unusable: why } of unusable.slice(0, HOSTS_NAMED)) {
    stderr.write(
      `note: ${host} has no usable SSH host key: no ssh_host_public_key in Terraform's output, and ${hostKeyObjectKey(host)} in ${known.store} holds none (${why}); the host publishes its own ssh-ed25519 key there: look at what wrote that object (${refusal(host)})\n`,
    );
  }
  if (unusable.length > HOSTS_NAMED) {
    stderr.write(
      `note: … and ${unusable.length - HOSTS_NAMED} more hosts whose published key is unusable (--json lists them)\n`,
    );
  }
}

/** Hosts a line names at most (a fleet of thousands would make one line of hundreds of kB). */
export const HOSTS_NAMED = 20;
/** Hosts without a key yet that get a note each; more get one note together. */
const PENDING_NOTED = 3;
