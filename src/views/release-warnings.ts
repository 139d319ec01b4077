// What the release view warns of, as text: pure, from what the reading found.
import type { Release } from "../release/release.js";
import type { ReleaseEntry } from "../release/release-store.js";

/** `release list`: each release file that is missing or does not parse as a release, and why. */
export function listWarnings(entries: readonly ReleaseEntry[]): string[] {
  return entries.flatMap((e) => (e.status === "ok" ? [] : [e.problem]));
}

export interface ShowFacts {
  readonly release: Pick<Release, "seq" | "expires">;
  readonly expired: boolean;
  /** A release above this one listed in the channel (signed by a trusted key when verified). */
  readonly newer: number | undefined;
  readonly verified: boolean;
  /** Hosts of the release whose status record could not be read, and why, in release order. */
  readonly unreadable: readonly (readonly [string, string])[];
}

/** `release show`: an expired release, a channel that names an older release, bad records. */
export function showWarnings(facts: ShowFacts): string[] {
  const { release, newer } = facts;
  return [
    ...(facts.expired
      ? [
          `release ${release.seq} expired at ${release.expires}: agents refuse it; renew the channel with 'nixship release refresh'`,
        ]
      : []),
    ...(newer !== undefined
      ? [
          `the channel names release ${release.seq}, but release ${newer} exists${facts.verified ? " and is signed by a trusted key" : ""}: the channel was replayed or a publisher was interrupted; agents with no state refuse it until a new release moves the channel on`,
        ]
      : []),
    ...facts.unreadable.map(([host, why]) => `${host}: its status record is unreadable: ${why}`),
  ];
}
