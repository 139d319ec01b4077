// What an agent makes of a release head whose signature it verified, against what it applied
// last: take it, leave it (the same release again), or refuse it, saying why. Pure: agent.ts
// reads the channel, and writes what follows.
import { checkExpiry, checkSequence, type ReleaseHead } from "../release/release.js";

export type HeadVerdict =
  | { readonly kind: "take" }
  /** The release already applied here, the same to the digest. */
  | { readonly kind: "unchanged" }
  | {
      readonly kind: "refuse";
      readonly why: string;
      /** The release the refusal is filed under: none for another channel's. */
      readonly seq: number | undefined;
    };

/** What this host applied last (its state file's), and the release it was interrupted in. */
export interface LastApplied {
  readonly lastSeq: number | null;
  readonly lastDigest: string | null;
  readonly interrupted?: { readonly seq: number; readonly digest: string } | null;
}

/**
 * The verdict on `release` (signed, its digest `digest`) for an agent that follows `channel`:
 * another channel's, an older or a changed release, or one expired at `now`, is refused. A
 * release begun here and interrupted holds the channel as one applied does: the host may run
 * its system, so an older release (a replay) would take it back; that release itself is taken.
 */
export function headVerdict(
  release: ReleaseHead,
  digest: string,
  channel: string,
  last: LastApplied,
  now: Date,
): HeadVerdict {
  if (release.channel !== channel) {
    return {
      kind: "refuse",
      why: `release ${release.seq} is for channel "${release.channel}", not "${channel}"`,
      seq: undefined,
    };
  }
  const sequence = checkSequence(release, last.lastSeq ?? undefined);
  if (!sequence.ok) {
    if (sequence.reason === "same" && digest === last.lastDigest) return { kind: "unchanged" };
    return {
      kind: "refuse",
      why:
        sequence.reason === "same"
          ? `release ${release.seq} differs from the release ${release.seq} already applied`
          : `release ${release.seq} is older than release ${sequence.lastApplied} already applied here (a replay?)`,
      seq: release.seq,
    };
  }
  const begun = last.interrupted;
  if (begun != null && release.seq < begun.seq) {
    return {
      kind: "refuse",
      why: `release ${release.seq} is older than release ${begun.seq}, whose activation began here and was interrupted (a replay?)`,
      seq: release.seq,
    };
  }
  if (begun != null && release.seq === begun.seq && digest !== begun.digest) {
    return {
      kind: "refuse",
      why: `release ${release.seq} differs from the release ${begun.seq} whose activation began here and was interrupted`,
      seq: release.seq,
    };
  }
  const expiry = checkExpiry(release, now);
  return expiry.ok ? { kind: "take" } : { kind: "refuse", why: expiry.message, seq: release.seq };
}
