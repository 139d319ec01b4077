// Releases in an ObjectStore: `releases/<channel>/<seq>.json`, written once and never replaced,
// and `channels/<channel>.json`, a byte-for-byte copy of the release the channel points at; a
// sharded release's shards first, under `release-shards/` (shard-store.ts).
// Publishing is race-safe through conditional puts; reading does not verify (callers do).
import { InputError, OperationError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import {
  type HealthChecks,
  NAME_MAX_LENGTH,
  NAME_PATTERN,
  RELEASE_DEFAULTS,
} from "../fleet/fleet.js";
import type { PublicKey, SecretKey } from "../nix/keys.js";
import { ensureConditionalWrites } from "../store/conditional-writes.js";
import { listAll, readAll, readBody } from "../store/helpers.js";
import type { GetOptions, ObjectStore } from "../store/object-store.js";
import { onLastWord } from "../util/last-words.js";
import { mapLimit } from "../util/pool.js";
import type { Release, ReleaseHost, ReleaseKind, SignedRelease } from "./release.js";
import { releaseDigest } from "./release-canonical.js";
import {
  checkReleaseOrigin,
  formatReleaseOrigin,
  ORIGIN_LIMIT,
  type Origin,
  type OriginCheck,
} from "./release-origin.js";
import { parseReleaseHead } from "./release-parse.js";
import { signRelease } from "./release-shard.js";
import { putShards } from "./shard-store.js";

/** Release files read at once by listReleases. */
const READ_CONCURRENCY = 8;
const SEQ_FILE = /^([1-9][0-9]{0,14})\.json$/;
/** The highest release number: the most a release file's name holds (SEQ_FILE, 15 digits). */
export const MAX_RELEASE_SEQ = 999_999_999_999_999;
const CHANNELS_PREFIX = "channels/";
const RELEASES_PREFIX = "releases/";

export type StoredObject =
  | { readonly status: "absent" }
  | { readonly status: "found"; readonly etag: string; readonly bytes: Uint8Array };

export type ChannelRead = StoredObject | { readonly status: "not-modified" };

export interface PublishOptions {
  readonly channel: string;
  readonly hosts: Readonly<Record<string, ReleaseHost>>;
  readonly kind: ReleaseKind;
  readonly action: Action;
  readonly health: HealthChecks;
  readonly confirmTimeout: number;
  /** Generations hosts keep after a confirmed activation (0 or absent: all). */
  readonly keepGenerations?: number;
  readonly key: SecretKey;
  /** The release's creation time (default: now). */
  readonly now?: Date;
  /** Seconds until the release expires (default RELEASE_DEFAULTS.maxAge: the fleet's releases.maxAge). */
  readonly maxAge?: number;
  /** Who publishes it and from what: signed beside it (releaseOriginKey); absent: nothing. */
  readonly origin?: Origin;
  /**
   * The digest of what the channel held when `hosts` were derived from it (null: nothing): the
   * release is published only over exactly that, so a release another publisher made since is
   * never replaced by entries read before it (release-conflict). Absent: over what it holds now.
   */
  readonly basis?: string | null;
  /**
   * The number of the newest release a release key signed that this one follows (0: none):
   * the publisher's verified read. Given, the number is taken past it and past the files
   * listed within MAX_SKIP above it (a stopped publisher's, never reused), never from a
   * channel that did not verify or a file far above (planted by someone without a key, which
   * would number this release up to the last a release may have). Absent: past the channel's
   * and every listed file's number.
   */
  readonly after?: number;
}

/** Listed release numbers above the verified one that are taken past; those above are planted. */
export const MAX_SKIP = 1000;

/** One release file of a channel, as `release list` shows it. */
export type ReleaseEntry =
  | {
      readonly status: "ok";
      readonly seq: number;
      readonly created: string;
      readonly kind: ReleaseKind;
      readonly digest: string;
      readonly hosts: number;
      /** The channel points at this release (its file and the channel hold the same bytes). */
      readonly current: boolean;
    }
  | {
      /** The file does not parse as a release; `problem` says why. */
      readonly status: "malformed";
      readonly seq: number;
      readonly digest: string;
      readonly current: boolean;
      readonly problem: string;
    }
  | {
      /**
       * No file: a number below the channel's highest that has none (numbers are taken one after
       * another), or a file listed but gone when read. `problem` names the file.
       */
      readonly status: "missing";
      readonly seq: number;
      readonly current: false;
      readonly problem: string;
    };

/** A release list entry read from a file (ok or malformed). */
export type ReleaseFileEntry = Exclude<ReleaseEntry, { readonly status: "missing" }>;

export function channelKey(channel: string): string {
  return `${CHANNELS_PREFIX}${checkChannel(channel)}.json`;
}

export function releaseKey(channel: string, seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 1 || seq > MAX_RELEASE_SEQ) {
    throw new InputError(
      "bad-release-seq",
      `a release number is a whole number from 1 to ${MAX_RELEASE_SEQ}, got ${seq}`,
    );
  }
  return `${releasePrefix(channel)}${seq}.json`;
}

/**
 * Where who published release `seq` and from what is kept (release-origin.ts): beside it, under
 * a name that is not a release number's, so listings of release files pass over it.
 */
export function releaseOriginKey(channel: string, seq: number): string {
  return releaseKey(channel, seq).replace(/\.json$/, ".origin.json");
}

/**
 * The origin document of a release whose stored bytes are `releaseBytes`, checked against the
 * trusted keys and that release's digest (release-origin.ts): one GET of at most ORIGIN_LIMIT.
 */
export async function readReleaseOrigin(
  store: ObjectStore,
  release: Pick<Release, "channel" | "seq">,
  releaseBytes: Uint8Array,
  keys: readonly PublicKey[],
): Promise<OriginCheck> {
  const key = releaseOriginKey(release.channel, release.seq);
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readAll(store, key, ORIGIN_LIMIT);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return { status: "untrusted", problem: err.message };
  }
  if (bytes === undefined) return { status: "none" };
  const digest = releaseDigest(releaseBytes);
  return checkReleaseOrigin(bytes, { channel: release.channel, seq: release.seq, digest }, keys);
}

function releasePrefix(channel: string): string {
  return `${RELEASES_PREFIX}${checkChannel(channel)}/`;
}

function checkChannel(channel: string): string {
  if (isChannelName(channel)) return channel;
  throw new InputError(
    "bad-channel",
    `channel name "${channel}" must match ${NAME_PATTERN.source} (at most ${NAME_MAX_LENGTH} characters)`,
  );
}

/** The channel's current release, unverified; with ifNoneMatch, not-modified when unchanged. */
export async function readChannel(
  store: ObjectStore,
  channel: string,
  options: GetOptions = {},
): Promise<ChannelRead> {
  const got = await store.get(channelKey(channel), options);
  if (got === undefined) return { status: "absent" };
  if (got.status === "not-modified") return got;
  const bytes = await readBody(got.body, channelKey(channel));
  return { status: "found", etag: got.info.etag, bytes: new Uint8Array(bytes) };
}

/** One release file, unverified. */
export async function readRelease(
  store: ObjectStore,
  channel: string,
  seq: number,
): Promise<StoredObject> {
  const got = await store.get(releaseKey(channel, seq));
  if (got === undefined) return { status: "absent" };
  const bytes = await readBody(got.body, releaseKey(channel, seq));
  return { status: "found", etag: got.info.etag, bytes: new Uint8Array(bytes) };
}

/**
 * Publishes a new release of the channel and points the channel at it. Never overwrites: the
 * release file is put if absent and the channel only over the version read, so of publishers
 * racing on one channel exactly one wins; the others get OperationError `release-conflict`
 * having changed nothing.
 */
export async function publishRelease(
  store: ObjectStore,
  options: PublishOptions,
): Promise<SignedRelease> {
  const { channel } = options;
  // A bad name is bad input whatever the store; then the store must take conditional writes.
  checkChannel(channel);
  await ensureConditionalWrites(store);
  // (1) The channel as it stands: the version to replace, and what the new release follows.
  // What the channel holds need not parse (planted, or damaged): the new release then follows
  // on from the listed release files, and replaces it all the same.
  const current = await readChannel(store, channel);
  const head =
    current.status === "found"
      ? { etag: current.etag, digest: releaseDigest(current.bytes), seq: seqOf(current.bytes) }
      : undefined;
  if (options.basis !== undefined && options.basis !== (head?.digest ?? null)) {
    throw conflict(
      `another publisher published release ${head?.seq ?? "?"} of channel ${channel} since this one read it; nothing was written; read it again and publish on top of it`,
    );
  }
  // (2) Past every release file, so one left by an interrupted publisher is never reused (with
  // `after`, past those near it only).
  const { after } = options;
  const listed =
    after === undefined
      ? await highestListed(store, channel)
      : ((await listedSeqs(store, channel)).filter((n) => n <= after + MAX_SKIP).at(-1) ?? 0);
  const seq = Math.max(after ?? head?.seq ?? 0, listed) + 1;
  if (seq > MAX_RELEASE_SEQ) {
    // Only a file planted by someone without a release key numbers a release that high.
    const where =
      listed >= (head?.seq ?? 0)
        ? `the release file ${releaseKey(channel, listed)} is numbered ${listed}`
        : `the channel ${channelKey(channel)} names release ${head?.seq}`;
    throw new OperationError(
      "release-seq-exhausted",
      `channel ${channel}: ${where}, so the next release would be past the highest a release may have (${MAX_RELEASE_SEQ}); nothing was written`,
      {
        hint: "a file numbered that high was planted, or the channel was: remove it ('nixship release show N --trusted-key KEY' tells whether a release key signed it; a publisher numbers its release from the newest a release key signed, past files planted far above it)",
      },
    );
  }
  const created = options.now ?? new Date();
  const maxAge = options.maxAge ?? RELEASE_DEFAULTS.maxAge;
  // Sharded when it names more than SHARD_HOSTS hosts (release-shard.ts).
  const signed = signRelease(
    {
      version: 1,
      channel,
      seq,
      created: created.toISOString(),
      expires: new Date(created.getTime() + maxAge * 1000).toISOString(),
      previous: head?.digest ?? null,
      kind: options.kind,
      action: options.action,
      health: options.health,
      confirmTimeout: options.confirmTimeout,
      ...(options.keepGenerations ? { keepGenerations: options.keepGenerations } : {}),
      hosts: options.hosts,
    },
    options.key,
  );
  // (3) The shards first, so no reader sees a release whose shards are missing; their keys hold
  // their digests, so a racing publisher's differ (or are the same bytes). A publisher that loses
  // the race below leaves its shards: no release names them, and nothing lists them.
  await putShards(store, channel, seq, signed.shards ?? []);
  // (4) The release file, only if no other publisher took the number.
  const file = releaseKey(channel, seq);
  const written = await store.put(file, signed.bytes, {
    contentType: "application/json",
    condition: { ifAbsent: true },
  });
  // A retried write (its first answer lost) that meets its own first attempt is ours, not a
  // race lost: the file holds these very bytes.
  if (written.status === "precondition-failed" && !(await holds(store, file, signed.bytes))) {
    throw conflict(
      `another publisher published release ${seq} of channel ${channel} at the same time; nothing was written; re-run to publish on top of it`,
    );
  }
  // From here until the channel names it or it is withdrawn, a process made to stop at once (a
  // second interrupt, a CI job cancelled) withdraws it first, unless the channel names it: a
  // release file left above a channel that never named it stops every later publisher
  // (release-channel-ambiguous) until someone deletes it.
  const forget = onLastWord(() =>
    withdrawUnlessNamed(store, channel, seq, signed.digest, options.origin !== undefined),
  );
  try {
    return await pointChannel(store, options, { file, seq, signed, head });
  } finally {
    forget();
  }
}

/** Whether the object at `key` holds exactly `bytes` (a write of ours that landed). */
async function holds(store: ObjectStore, key: string, bytes: Uint8Array): Promise<boolean> {
  // Another's, larger than these bytes, is refused past them: not ours either.
  const now = await readAll(store, key, bytes.length).catch((err: unknown) => {
    if (err instanceof InputError) return undefined;
    throw err;
  });
  return now !== undefined && Buffer.from(now).equals(bytes);
}

/**
 * Whether the channel names release `seq` (its `digest`) now; when it does not, its file (and
 * origin) is deleted first. A channel that cannot be read throws, and nothing is deleted.
 */
async function withdrawUnlessNamed(
  store: ObjectStore,
  channel: string,
  seq: number,
  digest: string,
  hasOrigin: boolean,
): Promise<boolean> {
  const now = await readChannel(store, channel);
  if (now.status === "found" && releaseDigest(now.bytes) === digest) return true;
  if (hasOrigin) await store.delete(releaseOriginKey(channel, seq));
  await store.delete(releaseKey(channel, seq));
  return false;
}

/** Steps (5) and (6) of publishRelease, once its release file is written. */
async function pointChannel(
  store: ObjectStore,
  options: PublishOptions,
  {
    file,
    seq,
    signed,
    head,
  }: {
    readonly file: string;
    readonly seq: number;
    readonly signed: SignedRelease;
    readonly head: { readonly etag: string } | undefined;
  },
): Promise<SignedRelease> {
  const { channel } = options;
  // (5) Who published it and from what, beside it (the number is ours now), before any host
  // can be pointed at it; a write that fails withdraws the release, as a lost race does.
  const originFile = releaseOriginKey(channel, seq);
  if (options.origin !== undefined) {
    const { origin } = options;
    await store
      .put(
        originFile,
        formatReleaseOrigin({ channel, seq, digest: signed.digest }, origin, options.key),
        { contentType: "application/json" },
      )
      .catch(async (err: unknown) => {
        await store.delete(file).catch(() => undefined);
        throw err;
      });
  }
  // (6) The channel, only over the version read in (1). A write that failed (the store's
  // retries spent) may yet have landed: the channel is read back, and the release withdrawn
  // unless the channel holds it, so that no release file is left above a channel that never
  // named it (which the next publisher could not tell from a replayed channel).
  const hasOrigin = options.origin !== undefined;
  const moved = await store
    .put(channelKey(channel), signed.bytes, {
      contentType: "application/json",
      condition: head === undefined ? { ifAbsent: true } : { ifMatch: head.etag },
    })
    .catch(async (err: unknown) => {
      const named = await withdrawUnlessNamed(store, channel, seq, signed.digest, hasOrigin).catch(
        () => false,
      );
      if (named) return { status: "written" as const };
      throw err;
    });
  // The same for the channel: withdrawn only when it names another release.
  if (
    moved.status === "precondition-failed" &&
    !(await withdrawUnlessNamed(store, channel, seq, signed.digest, hasOrigin))
  ) {
    throw conflict(
      `another publisher published a release of channel ${channel} at the same time; release ${seq} was withdrawn and the channel left as they set it; re-run to publish on top of it`,
    );
  }
  return signed;
}

/**
 * Every release of the channel in order of seq, from 1 to the highest listed, and whether the
 * channel points at it: a number with no file is a `missing` entry naming it, never left out.
 * `known` (a reader that lists again and again: the dashboard) keeps each file's entry by key,
 * since release files are never replaced: a file is then read once.
 */
export async function listReleases(
  store: ObjectStore,
  channel: string,
  known?: Map<string, ReleaseEntry>,
): Promise<ReleaseEntry[]> {
  const listed = await listedSeqs(store, channel);
  const current = await readChannel(store, channel);
  const currentDigest = current.status === "found" ? releaseDigest(current.bytes) : undefined;
  const entries = await mapLimit(
    releaseNumbers(listed),
    READ_CONCURRENCY,
    async ({ seq, isListed }) => {
      const key = releaseKey(channel, seq);
      if (!isListed) return missingRelease(channel, seq, "not listed");
      const kept = known?.get(key);
      if (kept !== undefined) {
        return kept.status === "missing"
          ? kept
          : { ...kept, current: kept.digest === currentDigest };
      }
      const read = await readRelease(store, channel, seq);
      // Listed, then gone: a release withdrawn by a publisher that lost a race, or removed.
      if (read.status === "absent")
        return missingRelease(channel, seq, "listed, then gone when read");
      const entry = releaseEntryOf(read.bytes, seq, key, currentDigest);
      known?.set(key, entry);
      return entry;
    },
  );
  return entries;
}

/**
 * Each number from 1 to the highest of `listed` (ascending), and whether it was listed. Past
 * MAX_GAPS unlisted numbers (a planted `releases/<channel>/999999.json`), only listed ones.
 */
export function releaseNumbers(listed: readonly number[]): { seq: number; isListed: boolean }[] {
  const highest = listed.at(-1) ?? 0;
  if (highest - listed.length > MAX_GAPS) return listed.map((seq) => ({ seq, isListed: true }));
  const set = new Set(listed);
  return Array.from({ length: highest }, (_, i) => ({ seq: i + 1, isListed: set.has(i + 1) }));
}

/** Numbers without a file that release list names one by one; more are not expanded. */
const MAX_GAPS = 1000;

/** The entry of a release number that has no file (`why`: how that was found). */
export function missingRelease(channel: string, seq: number, why: string): ReleaseEntry {
  const key = releaseKey(channel, seq);
  return {
    status: "missing",
    seq,
    current: false,
    problem: `${key} is missing (${why}): release ${seq} of channel ${channel} has no file in the store (removed, or withdrawn by a publisher that lost a race)`,
  };
}

/** A release file as `release list` shows it; `currentDigest`: the channel file's digest. */
export function releaseEntryOf(
  bytes: Uint8Array,
  seq: number,
  source: string,
  currentDigest: string | undefined,
): ReleaseFileEntry {
  const digest = releaseDigest(bytes);
  const current = digest === currentDigest;
  try {
    const parsed = parseReleaseHead(bytes, source);
    const release = parsed.head;
    if (release.seq !== seq) {
      const problem = `${source}: holds release ${release.seq}, not ${seq}`;
      return { status: "malformed", seq, digest, current, problem };
    }
    const { created, kind } = release;
    // A sharded release's head counts its shards' hosts: none is read.
    const hosts =
      parsed.hosts === undefined
        ? parsed.shards.reduce((sum, shard) => sum + shard.hosts, 0)
        : Object.keys(parsed.hosts).length;
    return { status: "ok", seq, created, kind, digest, hosts, current };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return { status: "malformed", seq, digest, current, problem: err.message };
  }
}

/** The number of the release in `bytes`, or 0 when they do not parse as one. */
function seqOf(bytes: Uint8Array): number {
  try {
    return parseReleaseHead(bytes, "channel").head.seq;
  } catch (err) {
    if (err instanceof InputError) return 0;
    throw err;
  }
}

/** The highest release number listed under the channel's releases (0: none). */
export async function highestListed(store: ObjectStore, channel: string): Promise<number> {
  return (await listedSeqs(store, channel)).at(-1) ?? 0;
}

/** The numbers of the channel's release files, ascending; other names are ignored. */
export async function listedSeqs(store: ObjectStore, channel: string): Promise<number[]> {
  const prefix = releasePrefix(channel);
  const seqs: number[] = [];
  for await (const info of listAll(store, prefix)) {
    const match = SEQ_FILE.exec(info.key.slice(prefix.length));
    if (match?.[1] !== undefined) seqs.push(Number(match[1]));
  }
  return seqs.sort((a, b) => a - b);
}

/** Every channel the store has a channel file for (one LIST per 1,000 channels). */
export async function listChannels(store: ObjectStore): Promise<string[]> {
  const channels: string[] = [];
  for await (const info of listAll(store, CHANNELS_PREFIX)) {
    const name = /^([^/]+)\.json$/.exec(info.key.slice(CHANNELS_PREFIX.length))?.[1];
    if (name !== undefined && isChannelName(name)) channels.push(name);
  }
  return channels;
}

/**
 * Every channel's release numbers, ascending, from one listing of `releases/` (LIST calls only,
 * 1,000 files each): also the channels whose channel file is missing.
 */
export async function listReleaseSeqs(store: ObjectStore): Promise<Map<string, number[]>> {
  const seqs = new Map<string, number[]>();
  for await (const info of listAll(store, RELEASES_PREFIX)) {
    const [channel, file, ...rest] = info.key.slice(RELEASES_PREFIX.length).split("/");
    const seq = file === undefined || rest.length > 0 ? undefined : SEQ_FILE.exec(file)?.[1];
    if (channel === undefined || seq === undefined || !isChannelName(channel)) continue;
    const list = seqs.get(channel) ?? [];
    list.push(Number(seq));
    seqs.set(channel, list);
  }
  for (const list of seqs.values()) list.sort((a, b) => a - b);
  return seqs;
}

export function isChannelName(name: string): boolean {
  return NAME_PATTERN.test(name) && name.length <= NAME_MAX_LENGTH;
}

function conflict(message: string): OperationError {
  return new OperationError("release-conflict", message);
}

/**
 * The bytes of release `which` of `channel` (or of the release the channel names), where they
 * were found, and whether the channel names them. Fails with release-not-found.
 */
export async function findRelease(
  store: ObjectStore,
  channel: string,
  which: number | "latest",
): Promise<{ bytes: Uint8Array; source: string; current: boolean }> {
  if (which === "latest") {
    const read = await readChannel(store, channel);
    if (read.status !== "found") {
      throw new OperationError(
        "release-not-found",
        `channel ${channel} has no release in ${store.url} (no ${channelKey(channel)})`,
        { hint: "check --channel and --store" },
      );
    }
    return { bytes: read.bytes, source: channelKey(channel), current: true };
  }
  const read = await readRelease(store, channel, which);
  if (read.status !== "found") {
    throw new OperationError(
      "release-not-found",
      `channel ${channel} has no release ${which} in ${store.url} (no ${releaseKey(channel, which)})`,
      { hint: `see 'nixship release list --channel ${channel}' for its releases` },
    );
  }
  const channelBytes = await readAll(store, channelKey(channel));
  const current = channelBytes !== undefined && Buffer.from(read.bytes).equals(channelBytes);
  return { bytes: read.bytes, source: releaseKey(channel, which), current };
}

/** Fails with release-misplaced unless the release found at `source` is the one asked for. */
export function requirePlacement(
  source: string,
  release: Pick<Release, "channel" | "seq">,
  channel: string,
  which: number | "latest",
): void {
  if (release.channel !== channel || (which !== "latest" && release.seq !== which)) {
    throw new InputError(
      "release-misplaced",
      `${source} holds release ${release.seq} of channel ${release.channel}`,
      { hint: "the store's release files were moved or copied by hand" },
    );
  }
}
