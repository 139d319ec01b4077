// The zstd CLI as the delta engine on the deployer's side: its version checked once (patch
// mode needs 1.4.5), and one delta computed from two NAR files, bounded in time.
import { OperationError } from "../errors.js";
import { eitherSignal, startDeadline } from "../util/deadline.js";
import { runCommand } from "../util/run.js";
import { deltaTimeoutMs } from "./delta-limits.js";

/** The first zstd release with `--patch-from`. */
export const ZSTD_PATCH_FROM_SINCE = [1, 4, 5] as const;

/**
 * The level deltas are computed at: measured on the lab's example systems and a 9 MB NAR
 * (docs/deltas.md, "Engine"): -19 gives the smallest deltas at a CPU cost the deployer pays
 * once per pair, for every host that shares it.
 */
export const DELTA_ZSTD_LEVEL = 19;

/**
 * Above this NAR size deltas are computed at DELTA_ZSTD_LARGE_LEVEL: on a 408 MB kernel, level
 * 19 took 412 CPU s and 1.41 GB for a delta 12% smaller than level 9's, which took 12 s
 * (bench:delta; docs/deltas.md, "Engine").
 */
export const DELTA_LARGE_NAR = 120 * 1024 * 1024;
export const DELTA_ZSTD_LARGE_LEVEL = 9;

/** The level a target of `narSize` bytes is compressed at, at best (the deploy's second pass). */
export function deltaLevelFor(narSize: number): number {
  return narSize > DELTA_LARGE_NAR ? DELTA_ZSTD_LARGE_LEVEL : DELTA_ZSTD_LEVEL;
}

/**
 * The level a deploy computes its pairs at first, so that they are ready for the hosts of its
 * early waves: 20 to 40 times less CPU than level 19 (bench:delta: the 251 MB mass rebuild took
 * 2.1 CPU s against 78, its deltas at most 2.1% of the zstd NAR), and with all of zstd's threads.
 */
export const DELTA_ZSTD_FAST_LEVEL = 3;

/**
 * With `threads: "all"`, targets below this NAR size are still computed on one thread: zstd's
 * workers only pay on large inputs. On the mass rebuild's pairs of 5-13 MB at level 3, -T0 took
 * 34 ms of CPU a pair against 21 on one thread, in the same wall time (a 62 MB target: 0.21 s
 * against 0.19; 250 MB: 0.78 s against 0.92), and a deploy's fast pass runs several pairs at once.
 */
export const DELTA_ZSTD_THREADS_FROM = 64 * 1024 * 1024;

/** The nice value zstd computes deltas at: in the background of the deploy. */
export const DELTA_ZSTD_NICE = 10;

/** zstd's window for patch mode: a base up to 2 GiB is all in reach (the host passes it too). */
export const DELTA_ZSTD_LONG = 31;

const INSTALL_HINT =
  "install zstd 1.4.5 or later (Debian 11 and later: apt-get install zstd; or nix profile install nixpkgs#zstd) and put it first on PATH";

/** Parses `zstd --version`'s line ("*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***"). */
export function parseZstdVersion(text: string): readonly [number, number, number] | undefined {
  const m = /\bv(\d+)\.(\d+)\.(\d+)\b/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** Whether `version` has `--patch-from`. */
export function supportsPatchFrom(version: readonly [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) {
    const have = version[i] as number;
    const need = ZSTD_PATCH_FROM_SINCE[i] as number;
    if (have !== need) return have > need;
  }
  return true;
}

const checked = new Map<string, Promise<void>>();

/** Fails with the fix when `zstd` is missing or too old for patch mode; asked once per command. */
export function checkZstdPatchFrom(zstd = "zstd"): Promise<void> {
  let check = checked.get(zstd);
  if (check === undefined) {
    check = askVersion(zstd);
    checked.set(zstd, check);
    check.catch(() => checked.delete(zstd));
  }
  return check;
}

async function askVersion(zstd: string): Promise<void> {
  const { stdout } = await runCommand(zstd, ["--version"], {
    purpose: "learn the zstd CLI's version for deltas",
    errorCodes: { missing: "zstd-missing", failed: "zstd-failed" },
    missingHint: INSTALL_HINT,
    signal: AbortSignal.timeout(30_000),
  });
  const version = parseZstdVersion(stdout);
  if (version === undefined) {
    throw new OperationError(
      "zstd-version",
      `cannot tell the version of '${zstd}' from '${stdout.trim().slice(0, 120)}'`,
      { hint: INSTALL_HINT },
    );
  }
  if (!supportsPatchFrom(version)) {
    throw new OperationError(
      "zstd-too-old",
      `'${zstd}' is zstd ${version.join(".")}, which has no --patch-from (deltas need ${ZSTD_PATCH_FROM_SINCE.join(".")} or later)`,
      { hint: INSTALL_HINT },
    );
  }
}

export interface ZstdDeltaOptions {
  readonly zstd?: string;
  readonly level?: number;
  /**
   * "all": zstd's worker threads on every core (`-T0`) for a target of DELTA_ZSTD_THREADS_FROM
   * or more, for the fast first pass; "one" (default): `--single-thread`, half the memory and a
   * slightly smaller delta at high levels.
   */
  readonly threads?: "all" | "one";
  /** Stops zstd when it runs longer (default: deltaTimeoutMs of the target's size). */
  readonly timeoutMs?: number;
  /** Stops zstd at once (an interrupted deploy); its partial output is the caller's to drop. */
  readonly signal?: AbortSignal;
}

/** Writes `out`, the zstd patch from the NAR file `base` to the NAR file `target`. */
export async function computeZstdDelta(
  base: string,
  target: string,
  out: string,
  targetSize: number,
  options: ZstdDeltaOptions = {},
): Promise<void> {
  const zstd = options.zstd ?? "zstd";
  await checkZstdPatchFrom(zstd);
  const level = options.level ?? deltaLevelFor(targetSize);
  const timeoutMs = options.timeoutMs ?? deltaTimeoutMs(targetSize);
  const timeout = startDeadline(timeoutMs);
  const signal = eitherSignal(timeout, options.signal);
  try {
    await runCommand(
      zstd,
      [
        "-q",
        `-${level}`,
        ...(level > 19 ? ["--ultra"] : []),
        // --single-thread: half the memory (122 MB instead of 224 for a 20 MiB NAR) at level
        // 19, the same delta within 0.02%.
        options.threads === "all" && targetSize >= DELTA_ZSTD_THREADS_FROM
          ? "-T0"
          : "--single-thread",
        `--long=${DELTA_ZSTD_LONG}`,
        `--patch-from=${base}`,
        target,
        "-o",
        out,
      ],
      {
        purpose: "compute a delta",
        // Below the deployer's own work (the rollout's sessions, and on one machine the hosts).
        priority: DELTA_ZSTD_NICE,
        errorCodes: { missing: "zstd-missing", failed: "delta-failed" },
        missingHint: INSTALL_HINT,
        signal,
      },
    );
  } catch (err) {
    if (options.signal?.aborted) throw err;
    if (timeout.signal.aborted) {
      throw new OperationError(
        "delta-timeout",
        `zstd took longer than ${Math.round(timeoutMs / 1000)} s to compute the delta of ${target}; stopped`,
        { hint: "give it more time (timeoutMs), or a lower level", cause: err },
      );
    }
    throw err;
  } finally {
    timeout.clear();
  }
}
