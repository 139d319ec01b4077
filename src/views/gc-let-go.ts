// The systems the collector's retention rules let go of, read for a dry run to say why each
// path goes: the releases of each channel just older than the newest --keep-releases (at most
// LET_GO_RELEASES each), and the systems the newest rollouts gave their hosts, or found them
// running, which no status record names once a later deploy moved on. Bounded reads; what does
// not read is passed over (it only explains).
import type { LetGo } from "../cache/gc-why.js";
import { InputError } from "../errors.js";
import { storePathOf } from "../nix/store-path.js";
import { listReleaseSeqs, readRelease, releaseKey } from "../release/release-store.js";
import { loadRelease } from "../release/shard-store.js";
import { type RolloutRecord, rolloutEntries } from "../status/rollout.js";
import { listNewestRollouts, readRollout } from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { GC_ROLLOUTS, releasePaths } from "./gc-roots.js";

/** Releases older than the kept ones read per channel at most, newest first. */
export const LET_GO_RELEASES = 20;

const READS = 8;

/**
 * What the rules let go of, each system once (for the first rule that names it): `first` (the
 * roots' own findings, e.g. past --keep-generations), then the older releases, newest first,
 * then the newest GC_ROLLOUTS rollouts, newest first.
 */
export async function letGoFromStore(
  store: ObjectStore,
  options: { readonly keepReleases: number; readonly first?: readonly LetGo[] },
): Promise<LetGo[]> {
  const found = new Map<string, LetGo>();
  const note = (letGo: LetGo) => {
    if (!found.has(letGo.path)) found.set(letGo.path, letGo);
  };
  for (const letGo of options.first ?? []) note(letGo);

  const keep = options.keepReleases;
  for (const [channel, seqs] of [...(await listReleaseSeqs(store))].sort(([a], [b]) =>
    a < b ? -1 : 1,
  )) {
    const older = seqs
      .slice(0, Math.max(0, seqs.length - keep))
      .slice(-LET_GO_RELEASES)
      .reverse();
    // Each release is reduced to its systems as it is read: a release may be megabytes.
    const perRelease = await mapLimit(older, READS, async (seq) => {
      const read = await readRelease(store, channel, seq);
      if (read.status !== "found" || read.bytes === undefined) return [];
      try {
        const { release } = await loadRelease(store, read.bytes, releaseKey(channel, seq));
        const systems = new Map<string, LetGo>();
        for (const [host, path] of releasePaths(release)) {
          if (!systems.has(path))
            systems.set(path, { rule: "keep-releases", path, host, channel, seq, keep });
        }
        return [...systems.values()];
      } catch (err) {
        if (err instanceof InputError) return [];
        throw err;
      }
    });
    for (const systems of perRelease) for (const letGo of systems) note(letGo);
  }

  // Each record is read and reduced to its systems at once: a record may be megabytes.
  const listed = await listNewestRollouts(store, GC_ROLLOUTS);
  const perRollout = await mapLimit(listed, READS, async ({ key }) => {
    try {
      const rollout = await readRollout(store, key);
      return rollout === undefined ? [] : rolloutSystems(rollout);
    } catch (err) {
      if (err instanceof InputError) return [];
      throw err;
    }
  });
  for (const systems of perRollout) for (const letGo of systems) note(letGo);
  return [...found.values()];
}

/** The systems a rollout gave its hosts, and those they ran before it, each once. */
function rolloutSystems(rollout: RolloutRecord): LetGo[] {
  const systems = new Map<string, LetGo>();
  for (const entry of rolloutEntries(rollout)) {
    for (const path of [entry.system, entry.before]) {
      if (typeof path !== "string" || storePathOf(path) !== path || systems.has(path)) continue;
      systems.set(path, {
        rule: "status",
        path,
        host: entry.host,
        rollout: rollout.id,
        at: rollout.startedAt,
      });
    }
  }
  return [...systems.values()];
}
