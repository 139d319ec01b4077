// The bounds of computing one delta on the deployer (docs/deltas.md, "Bounds"): the NAR bytes a
// pair may be computed from, the scratch disk it takes, and its deadline. Their one home.

/**
 * The most NAR bytes, base and target together, a pair is computed from (their narinfos'
 * NarSize, signed): above it the path comes whole. 2 GiB holds the largest pairs measured (the
 * kernel's 408 MB NAR and its base) several times over, and keeps what one pair writes to the
 * temporary directory, and zstd's memory (about both NARs' sizes), within what a deployer has.
 */
export const DELTA_MAX_PAIR_NAR = 2 * 1024 * 1024 * 1024;

/**
 * The scratch bytes a pair takes at most: both NARs, then the patch beside them, which is no
 * larger than the target's NAR for long (zstd stores a block it cannot shrink as it is).
 */
export function deltaScratchBytes(baseNarSize: number, targetNarSize: number): number {
  return baseNarSize + 2 * targetNarSize;
}

/**
 * A deadline for one pair, its NARs' download and zstd: two minutes, and 15 s per MiB of NAR.
 * Level 19 takes about 1.2 s of CPU per MiB of target; the margin is for a deployer whose cores
 * are busy (measured: 20 MiB took 216 s of wall time, 27 s of CPU, on this 2-core machine shared
 * with other work) and for a slow link to the cache.
 */
export function deltaTimeoutMs(narBytes: number): number {
  // At most what a timer holds (about 24 days): a size past the cap is refused, not waited for.
  return Math.min(120_000 + Math.ceil(narBytes / (1024 * 1024)) * 15_000, 2 ** 31 - 1);
}
