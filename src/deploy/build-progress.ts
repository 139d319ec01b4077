// The build's progress as deploy events: what Nix builds now and how many of how many are
// done (cache/nix-activity.ts reads it from Nix), emitted when it changes (at most every
// CHANGE_MS) and every QUIET_MS while nothing changes, so that a long build is never silent;
// nothing until a derivation builds, and a whole that never shrinks.
import type { BuildProgress } from "../cache/nix-activity.js";
import type { DeployEvent } from "./events.js";

/** The shortest time between two events for changes (a build of many small derivations). */
const CHANGE_MS = 2000;
/** An event at least this often while something builds. */
const QUIET_MS = 15_000;
/** The running builds an event names (the oldest first); the rest are counted. */
const NAMED = 8;

export interface BuildProgressReporter {
  readonly onProgress: (progress: BuildProgress) => void;
  /** Says a change not yet said, and stops the timer: call once the build ended, however. */
  readonly stop: () => void;
}

export function reportBuildProgress(
  emit: (event: DeployEvent) => void,
  now: () => number = Date.now,
): BuildProgressReporter {
  let latest: BuildProgress | undefined;
  let lastEmit = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Nix counts the derivations it expects as it finds them, and drops those a failure makes
  // moot: the whole said never shrinks, so that "N of M" only climbs.
  let whole = 0;
  const send = () => {
    timer = undefined;
    if (latest === undefined) return;
    lastEmit = now();
    whole = Math.max(whole, latest.expected + latest.failed);
    emit(buildProgressEvent({ ...latest, expected: whole - latest.failed }, lastEmit));
    if (latest.running.length > 0) schedule(QUIET_MS);
  };
  // Before any derivation builds, built or failed, the counts are Nix still finding its work:
  // nothing to say that the build's first line did not.
  const sayable = (p: BuildProgress) => p.running.length > 0 || p.done > 0 || p.failed > 0;
  const schedule = (ms: number) => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(send, ms);
    timer.unref?.();
  };
  return {
    onProgress(progress) {
      if (!sayable(progress) && lastEmit === 0) return;
      latest = progress;
      const wait = lastEmit + CHANGE_MS - now();
      if (wait <= 0) send();
      else schedule(wait);
    },
    stop() {
      const unsaid = timer !== undefined && latest !== undefined;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      // A change not yet said is said now: where the build ended.
      if (unsaid && latest !== undefined) {
        // With the total never shrinking, as every event before it.
        whole = Math.max(whole, latest.expected + latest.failed);
        emit(buildProgressEvent({ ...latest, expected: whole - latest.failed }, now()));
      }
      latest = undefined;
    },
  };
}

export function buildProgressEvent(progress: BuildProgress, at: number): DeployEvent {
  return {
    type: "build-progress",
    done: progress.done,
    expected: progress.expected,
    failed: progress.failed,
    building: progress.running.length,
    running: progress.running.slice(0, NAMED).map((b) => ({
      name: b.name,
      drv: b.drv,
      ...(b.machine === undefined ? {} : { machine: b.machine }),
      seconds: Math.max(0, Math.round((at - b.since) / 1000)),
    })),
  };
}
