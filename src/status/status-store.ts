// Status objects in an ObjectStore (layout in status.ts): hosts and deployers write them, and
// `nixship status`, the rollout's health gates and the dashboard read them.
import { InputError, NixshipError } from "../errors.js";
import { NAME_PATTERN } from "../fleet/fleet.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import type { CrowdedSegments } from "./crowded-segments.js";
import {
  formatHeartbeat,
  HEARTBEAT_PREFIX,
  type Heartbeat,
  type HeartbeatBody,
  heartbeatKey,
  summariseHeartbeats,
} from "./heartbeat.js";
import { listHostPrefixes } from "./host-listing.js";
import {
  type HostSigningKey,
  judgeReport,
  type ReportPlace,
  type ReportTrust,
  signedReportBytes,
} from "./report-signature.js";
import {
  HOST_STATUS_PREFIX,
  hostStatusKey,
  type ProgressEntry,
  parseStatusRecord,
  progressKey,
  progressPrefix,
  type StatusRecord,
  summariseProgress,
} from "./status.js";

const JSON_TYPE = "application/json";

/**
 * Records a host's status: its latest record, and, for a release, the marker of the state it
 * reached. The record first: a deploy ends when it sees the markers, and what `status`, the
 * dashboard and the next plan read then (the records) must already say what the deploy said.
 */
export async function writeStatus(
  store: ObjectStore,
  record: StatusRecord,
  key?: HostSigningKey,
): Promise<void> {
  // An agent signs its reports with its host key (report-signature.ts); a deployer's are unsigned.
  const body = signedReportBytes(record, key);
  await store.put(hostStatusKey(record.host), body, { contentType: JSON_TYPE });
  await putMarker(store, record, body);
}

/**
 * Records only the host's latest record, no marker: what an agent saw of its host between
 * releases (switched by hand, booted anew). A release's marker says what that release did, and
 * rollback reads the generation it reached there (channel/rollback-targets.ts).
 */
export async function writeHostRecord(
  store: ObjectStore,
  record: StatusRecord,
  key?: HostSigningKey,
): Promise<void> {
  await store.put(hostStatusKey(record.host), signedReportBytes(record, key), {
    contentType: JSON_TYPE,
  });
}

/**
 * Records only the marker of the state a host reached on a release, not its latest record: an
 * agent's dry run, which asked nothing of the host (agent/agent-records.ts dryRun).
 */
export async function writeMarker(
  store: ObjectStore,
  record: StatusRecord,
  key?: HostSigningKey,
): Promise<void> {
  await putMarker(store, record, signedReportBytes(record, key));
}

async function putMarker(store: ObjectStore, record: StatusRecord, body: Uint8Array) {
  if (record.channel === null || record.seq === null) return;
  await store.put(progressKey(record.channel, record.seq, record.host, record.state), body, {
    contentType: JSON_TYPE,
  });
}

/** The largest status record read: far more than one carries (its error is at most 8 kB). */
export const STATUS_RECORD_LIMIT = 256 * 1024;

/**
 * The host's latest record, or undefined when it never reported. A record at the host's key
 * that names another host is refused (it would stand in for that host).
 */
export async function readStatus(
  store: ObjectStore,
  host: string,
): Promise<StatusRecord | undefined> {
  const key = hostStatusKey(host);
  const record = await readRecord(store, key);
  if (record !== undefined && record.host !== host) {
    throw new InputError(
      "status-malformed",
      `${store.url} ${key}: the record names host '${record.host.slice(0, 80)}', not ${host}`,
    );
  }
  return record;
}

export async function readRecord(
  store: ObjectStore,
  key: string,
): Promise<StatusRecord | undefined> {
  const bytes = await readAll(store, key, STATUS_RECORD_LIMIT);
  return bytes === undefined ? undefined : parseStatusRecord(bytes, `${store.url} ${key}`);
}

/**
 * The report at `key` (undefined: gone; malformed: InputError), judged against the host's key:
 * see judgeReport.
 */
export async function readJudgedReport(
  store: ObjectStore,
  key: string,
  hostKey: string,
  place: ReportPlace,
): Promise<ReportTrust | undefined> {
  const bytes = await readAll(store, key, STATUS_RECORD_LIMIT);
  return bytes === undefined
    ? undefined
    : judgeReport(bytes, `${store.url} ${key}`, hostKey, place);
}

/** A host's latest record as read: found, never written, or unreadable (that host's alone). */
export type RecordRead =
  | { readonly status: "found"; readonly record: StatusRecord }
  | { readonly status: "absent" }
  | { readonly status: "unreadable"; readonly problem: string };

/**
 * The host's latest record, or why it is unreadable: malformed, or larger than a record may
 * be. A fault of the store itself (unreachable, denied) is everyone's: it is thrown.
 */
export async function readStatusOf(store: ObjectStore, host: string): Promise<RecordRead> {
  try {
    const record = await readStatus(store, host);
    return record === undefined ? { status: "absent" } : { status: "found", record };
  } catch (err) {
    if (!(err instanceof NixshipError) || !isRecordFault(err)) throw err;
    return { status: "unreadable", problem: err.message };
  }
}

/** Faults of one record: malformed, or larger than a record may be. */
function isRecordFault(err: NixshipError): boolean {
  return err.code === "status-malformed" || err.code === "object-too-large";
}

/** A host's record as a listing shows it: no body read. */
export interface ListedRecord {
  readonly host: string;
  readonly key: string;
  /** Changes whenever the record is written again: a reader GETs only records whose etag moved. */
  readonly etag: string;
  readonly updated: Date;
}

/** Every host that has a record (LIST calls only, 1,000 records each; no GET per host). */
export async function listStatusRecords(store: ObjectStore): Promise<ListedRecord[]> {
  const listed: ListedRecord[] = [];
  for await (const page of listStatusRecordPages(store)) listed.push(...page);
  return listed;
}

/** listStatusRecords a page at a time (one LIST call each), for a reader that GETs meanwhile. */
export async function* listStatusRecordPages(store: ObjectStore): AsyncGenerator<ListedRecord[]> {
  let token: string | undefined;
  do {
    const page = await store.list(HOST_STATUS_PREFIX, token === undefined ? {} : { token });
    yield page.objects.flatMap((o) => {
      const host = /^([^/]+)\.json$/.exec(o.key.slice(HOST_STATUS_PREFIX.length))?.[1];
      if (host === undefined || !NAME_PATTERN.test(host)) return [];
      return [{ host, key: o.key, etag: o.etag, updated: o.lastModified }];
    });
    token = page.nextToken;
  } while (token !== undefined);
}

export interface Progress {
  /** Each host that reported on the release, with the state it reached. */
  readonly hosts: Map<string, ProgressEntry>;
  /** LIST calls this read took. */
  readonly listCalls: number;
  /** Hosts whose markers held more keys than are read (host-listing.ts): the rest unread. */
  readonly skipped: readonly string[];
}

/**
 * Where every host is with release `seq` of `channel`: LIST calls only, ≤ 1,000 keys each, and
 * at most HOST_KEYS_READ markers of each host. `crowded`: kept by a reader that polls.
 */
export async function readProgress(
  store: ObjectStore,
  channel: string,
  seq: number,
  crowded?: CrowdedSegments,
): Promise<Progress> {
  const prefix = progressPrefix(channel, seq);
  const { objects, listCalls, skipped } = await listHostPrefixes(store, prefix, { crowded });
  return { hosts: summariseProgress(prefix, objects), listCalls, skipped };
}

/** An agent's heartbeat (heartbeat.ts): one PUT of a few hundred bytes. */
export async function writeHeartbeat(store: ObjectStore, beat: HeartbeatBody): Promise<void> {
  await store.put(heartbeatKey(beat.host, beat.state, beat.every), formatHeartbeat(beat), {
    contentType: JSON_TYPE,
  });
}

export interface Heartbeats {
  /** Each host's newest heartbeat. */
  readonly hosts: Map<string, Heartbeat>;
  /** LIST calls this read took. */
  readonly listCalls: number;
  /** Hosts whose heartbeat keys were more than are read (host-listing.ts): the rest unread. */
  readonly skipped: readonly string[];
}

/**
 * Every host's newest heartbeat of the first HOST_KEYS_READ keys under its prefix: LIST calls
 * only, ≤ 1,000 keys each. `crowded`: kept by a reader that polls.
 */
export async function readHeartbeats(
  store: ObjectStore,
  crowded?: CrowdedSegments,
): Promise<Heartbeats> {
  const { objects, listCalls, skipped } = await listHostPrefixes(store, HEARTBEAT_PREFIX, {
    crowded,
  });
  return { hosts: summariseHeartbeats(objects), listCalls, skipped };
}
