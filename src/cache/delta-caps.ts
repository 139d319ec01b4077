// The caps of deltas that the deployer and the host's script share (docs/deltas.md): their one
// home. The deployer reads them here; the build writes them into activate.sh (through
// host/script-constants.ts), so the two sides cannot differ.

/** The most bases a target gets a delta against: the deployer computes as many, the host asks. */
export const DELTA_MAX_BASES = 3;

/**
 * The most paths the host's delta step looks for deltas of, the first in byte order of the paths
 * it lacks: past it, paths come whole. The deployer's pairs take the same (deltaPairsFor).
 */
export const DELTA_MAX_PATHS = 2000;

/**
 * The most paths of one package name weighed as bases (the first in byte order): a bound on the
 * host step's memory, far above what a system holds of a name but `source`. The deployer's
 * pairs weigh the same.
 */
export const DELTA_MAX_PER_NAME = 200;

/** The largest `delta-info` read, by the deployer and on the host (it holds five short fields). */
export const DELTA_INFO_LIMIT = 4096;
