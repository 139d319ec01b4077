// Where `nixship rollback` sends an agent host: the system `--to` names (a store path, a
// release, a generation the host reported), or else the last system confirmed healthy on it
// before the one the channel names for it, so repeated rollbacks walk back and never flip.
import type { RollbackTarget } from "../fleet/rollback-target.js";
import type { PublicKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { Release } from "../release/release.js";
import { readSignedRelease } from "../release/signed-release-reads.js";
import type { ReportPlace } from "../status/report-signature.js";
import { hostStatusKey, progressKey, type StatusRecord } from "../status/status.js";
import { readJudgedReport, readRecord } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { HISTORY_RELEASES, type HistoryRead } from "./history-store.js";
import { type HostHistory, stepBack } from "./host-history.js";

/** What a rollback target is looked up in. */
export interface TargetSources {
  readonly store: ObjectStore;
  /** The channel whose releases `--to release:N` names. */
  readonly channel: string;
  /** The release keys a release named by `--to release:N` must be signed by. */
  readonly trustedKeys: readonly PublicKey[];
  /** Releases the history looked back over (default HISTORY_RELEASES), for the message. */
  readonly historyReleases?: number | undefined;
  /** Agent hosts' keys: such a host's generation is read from reports its key signed only. */
  readonly reportKeys?: ReadonlyMap<string, string> | undefined;
}

export type TargetFound = { readonly path: StorePath } | { readonly why: string };

/** The system a rollback sends `name` to, or why there is none. */
export async function rollbackTarget(
  sources: TargetSources,
  name: string,
  to: RollbackTarget | undefined,
  current: Release,
  history: HistoryRead,
): Promise<TargetFound> {
  const { channel } = current;
  const past = history.hosts.get(name) ?? [];
  const passed =
    history.untrusted.length === 0
      ? ""
      : ` (passed over release${history.untrusted.length === 1 ? "" : "s"} ${history.untrusted.join(", ")}: not signed by a trusted release key; signed by one since dropped from releases.publicKeys, they name systems --to /nix/store/… still sends the host to: docs/keys.md)`;
  if (to === undefined) {
    const named = current.hosts[name]?.path;
    if (named === undefined) {
      return {
        why: `release ${current.seq} of channel ${channel} does not name ${name}: it follows no system of this channel yet`,
      };
    }
    const back = stepBack(past, name, named);
    return back.status === "found" ? { path: back.path } : { why: `${back.why}${passed}` };
  }
  switch (to.kind) {
    case "path":
      return { path: to.path };
    case "release": {
      const release = await readSignedRelease(
        sources.store,
        sources.channel,
        to.seq,
        sources.trustedKeys,
      );
      if (release === "absent") return { why: `channel ${channel} has no release ${to.seq}` };
      if (release === "untrusted") {
        return {
          why: `release ${to.seq} of channel ${channel} is not signed by a trusted release key (one since dropped from releases.publicKeys? --to /nix/store/… sends the host to the system it named: docs/keys.md)`,
        };
      }
      const path = release.release.hosts[name]?.path;
      return path !== undefined
        ? { path }
        : { why: `release ${to.seq} of channel ${channel} does not name ${name}` };
    }
    case "generation":
      return generationSystem(sources, name, to.generation, past, channel);
  }
}

/**
 * The system of generation `generation` as the host reported it: its latest record, else the
 * success records of the releases in its history (one GET each, newest first, bounded by
 * the history's releases).
 */
async function generationSystem(
  sources: TargetSources,
  name: string,
  generation: number,
  past: HostHistory,
  channel: string,
): Promise<TargetFound> {
  const hostKey = sources.reportKeys?.get(name);
  const read = (key: string, place: ReportPlace) =>
    hostKey === undefined
      ? detailRecord(sources.store, key)
      : readJudgedReport(sources.store, key, hostKey, place)
          .then((r) => (r?.trusted ? r.record : undefined))
          .catch(() => undefined);
  const latest = await read(hostStatusKey(name), { host: name });
  if (latest?.generation === generation && latest.current !== null) {
    const path = latest.current as StorePath;
    // A record the host did not sign may be anyone's who can write to the store: the system it
    // names is taken only when a verified release named it for this host (else the release key
    // would sign a writer's choice: an old system, or another host's).
    if (hostKey !== undefined || past.some((e) => e.path === path)) return { path };
    return {
      why: `${name}'s status record says generation ${generation} is ${path}, which no verified release of channel ${channel} in the releases read named for ${name}, and the record is not signed (releases.signedReports): give --to /nix/store/… to send it there on purpose`,
    };
  }
  for (const e of [...past].reverse()) {
    if (e.outcome !== "success") continue;
    const record = await read(progressKey(channel, e.seq, name, "success"), {
      host: name,
      channel,
      seq: e.seq,
      state: "success",
    });
    if (record?.generation === generation && record.desired === e.path) return { path: e.path };
  }
  const last = latest?.generation ?? null;
  return {
    why: `${name} did not report generation ${generation} in the last ${sources.historyReleases ?? HISTORY_RELEASES} releases of channel ${channel}, refreshes not counted${last === null ? "" : ` (it last reported generation ${last})`}; give --to release:N or --to /nix/store/…`,
  };
}

/**
 * A host's record, for the generation it names only: a record that cannot be read or parsed (a
 * store error, or a host that wrote garbage) says nothing, rather than failing the rollback.
 */
function detailRecord(store: ObjectStore, key: string): Promise<StatusRecord | undefined> {
  return readRecord(store, key).catch(() => undefined);
}
