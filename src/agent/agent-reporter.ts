// What the pull agent writes of itself to the store, through the status writer: its host key
// (once), heartbeats (one small PUT every few polls, and on a change of state), and its status
// record, each folded from the one it last wrote (agent-records.ts); an apply reports
// "applying" only once it has run a while, and beats while it runs.

import { canonicalHostKey } from "../age/host-key.js";
import { InputError } from "../errors.js";
import {
  DEFAULT_HEARTBEAT_EVERY,
  type HeartbeatState,
  heartbeatPeriod,
  heartbeatPolls,
} from "../status/heartbeat.js";
import { publishHostKey } from "../status/host-key-store.js";
import { type HostSigningKey, loadHostSigningKey } from "../status/report-signature.js";
import type { StatusRecord } from "../status/status.js";
import {
  readStatus,
  writeHeartbeat,
  writeHostRecord,
  writeMarker,
  writeStatus,
} from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { readFileBounded } from "../util/bounded-file.js";
import type { HostSystem } from "./activator.js";
import {
  type AgentSelf,
  dryRun,
  observationBase,
  observedRecord,
  runningRecord,
} from "./agent-records.js";

/**
 * An apply reports "applying" (a marker and the host's record: two PUTs) only once it has run
 * this many seconds: a host that already runs its entry, as most hosts of an explicit channel
 * do, and a quick switch report only their outcome.
 */
export const REPORT_APPLYING_AFTER = 2;
/** Seconds between two applying reports that carry new log lines (one PUT pair each). */
export const LOG_REPORT_EVERY = 3;
/** Seconds before a host key that could not be read is read again, at a report. */
const SIGNING_KEY_RETRY = 600;

export interface AgentReporterOptions {
  readonly store: ObjectStore;
  readonly channel: string;
  readonly host: string;
  /** The store path of the nixship package the agent runs, named in its records. */
  readonly package?: string | undefined;
  /** The host's SSH host public key file, published once; undefined: nothing is published. */
  readonly hostKeyFile?: string | undefined;
  /**
   * The host's SSH host private key file (ed25519), which signs every status report
   * (status/report-signature.ts); undefined: reports go unsigned.
   */
  readonly signingKeyFile?: string | undefined;
  readonly pollInterval: number;
  readonly jitter: number;
  /** Polls between two heartbeats (default DEFAULT_HEARTBEAT_EVERY). */
  readonly heartbeatEvery?: number | undefined;
  /** Seconds an apply runs before it is reported as applying (default REPORT_APPLYING_AFTER). */
  readonly reportApplyingAfter?: number | undefined;
  /** The sequence number of the last release the agent applied, for its heartbeats. */
  readonly lastSeq: () => number | null;
  readonly now: () => string;
  readonly warn: (message: string) => void;
  /** A write that failed; `retryIn`: seconds to the next try, when it is tried again on its own. */
  readonly storeError: (message: string, retryIn?: number) => void;
}

export class AgentReporter {
  readonly #o: AgentReporterOptions;
  /** The host key was published (or cannot be read: then said once, and not tried again). */
  #hostKeyDone = false;
  /** Why the last publication failed in the store (said once a cause; tried again each poll). */
  #hostKeyFailure: string | undefined;
  /** What the last heartbeat said (undefined: none yet), and polls since it. */
  #beat: HeartbeatState | undefined;
  #pollsSinceBeat = 0;
  /** When the last heartbeat was written (performance.now()); undefined: none yet. */
  #beatAt: number | undefined;
  /** The system the host ran at the last look of reportRunning (undefined: not looked yet). */
  #lookedAt: string | null | undefined;
  /** The host's record as this agent last wrote or read it: the next is folded from it. */
  #written: StatusRecord | undefined;
  /** The key reports are signed with, once loaded; "none": it could not be read (yet). */
  #signingKey: HostSigningKey | "none" | undefined;
  /** When the key was last read (performance.now()). */
  #signingKeyTried = 0;

  constructor(options: AgentReporterOptions) {
    this.#o = options;
  }

  /** The record the next is folded from (status/next-record.ts), as this agent last wrote it. */
  get written(): StatusRecord | undefined {
    return this.#written;
  }

  /** At start: the record the state file says this agent last wrote. */
  resume(written: StatusRecord | undefined): void {
    this.#written = written;
  }

  get self(): AgentSelf {
    return { host: this.#o.host, package: this.#o.package };
  }

  /**
   * Publishes the host key at the first poll whose store takes it (one GET, at most one PUT).
   * The store's failure here is said (once a cause) and never fails the poll: the key serves
   * `secrets rekey` alone, and releases are applied without it.
   */
  async publishHostKey(): Promise<void> {
    const file = this.#o.hostKeyFile;
    if (file === undefined || this.#hostKeyDone) return;
    let key: string;
    try {
      const bytes = await readFileBounded(
        file,
        4096,
        (size) => new Error(`${file} holds ${size} bytes, more than a host key`),
      );
      if (bytes === undefined) throw new Error(`${file}: no such file`);
      key = canonicalHostKey(bytes.toString("utf8"), file);
    } catch (err) {
      this.#hostKeyDone = true;
      const why = err instanceof Error ? err.message : String(err);
      this.#o.warn(`this host's SSH host key is not published: ${why}`);
      return;
    }
    try {
      await publishHostKey(this.#o.store, this.#o.host, key);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      if (why !== this.#hostKeyFailure) {
        this.#hostKeyFailure = why;
        this.#o.storeError(
          `this host's SSH host key could not be published (tried again at the next poll): ${why}`,
        );
      }
      return;
    }
    this.#hostKeyDone = true;
  }

  /**
   * The host key reports are signed with, read at the first report. One that cannot be read is
   * said once: the reports then go unsigned (a deploy that knows the host's key does not believe
   * them), and it is read again at a report SIGNING_KEY_RETRY seconds later (on a first boot,
   * sshd may make the key after the agent's first report).
   */
  async #signingKeyOnce(): Promise<HostSigningKey | "none"> {
    const file = this.#o.signingKeyFile;
    if (file === undefined) return "none";
    const key = this.#signingKey;
    if (key !== undefined && key !== "none") return key;
    const now = performance.now();
    if (key === "none" && now - this.#signingKeyTried < SIGNING_KEY_RETRY * 1000) return "none";
    this.#signingKeyTried = now;
    try {
      this.#signingKey = await loadHostSigningKey(file);
    } catch (err) {
      if (this.#signingKey === undefined) {
        const why = err instanceof Error ? err.message : String(err);
        this.#o.warn(
          `this host's status reports are not signed: ${why}; a deploy whose fleet requires signed reports (releases.signedReports) does not believe them (docs/agent.md, "Signed reports")`,
        );
      }
      this.#signingKey = "none";
    }
    return this.#signingKey;
  }

  /** Seconds between two heartbeats at most (what readers allow for before "offline"). */
  get heartbeatPeriod(): number {
    const o = this.#o;
    return heartbeatPeriod(o.pollInterval, o.jitter, o.heartbeatEvery ?? DEFAULT_HEARTBEAT_EVERY);
  }

  /** Writes a heartbeat when one is due; resolves with whether it wrote one. */
  async heartbeat(state: HeartbeatState, force = false): Promise<boolean> {
    const o = this.#o;
    const every = heartbeatPolls(
      o.pollInterval,
      o.jitter,
      o.heartbeatEvery ?? DEFAULT_HEARTBEAT_EVERY,
    );
    this.#pollsSinceBeat++;
    if (!force && this.#beat === state && this.#pollsSinceBeat < every) return false;
    await writeHeartbeat(this.#o.store, {
      host: this.#o.host,
      channel: this.#o.channel,
      state,
      every: this.heartbeatPeriod,
      lastSeq: this.#o.lastSeq(),
      at: this.#o.now(),
    });
    this.#beat = state;
    this.#pollsSinceBeat = 0;
    this.#beatAt = performance.now();
    return true;
  }

  /**
   * Writes the host's status record (and its marker), noting the system it says the host runs;
   * of a dry run, the marker alone.
   */
  async writeRecord(record: StatusRecord): Promise<void> {
    const key = await this.#signingKeyOnce();
    const signing = key === "none" ? undefined : key;
    // A dry run's report: its release's marker alone; the host's record keeps its word, and
    // the next record is folded from that.
    if (dryRun(record)) {
      await writeMarker(this.#o.store, record, signing);
      return;
    }
    await writeStatus(this.#o.store, record, signing);
    this.#lookedAt = record.current;
    this.#written = record;
  }

  /**
   * With each heartbeat: when the host runs another system than its record says (someone
   * switched it by hand, as nixos-rebuild does), the record is written again with what it runs,
   * so that `nixship status` and the dashboard see its drift. One `activate.sh status`; one GET
   * and one PUT only when what it runs changed since the last look.
   */
  async reportRunning(system: HostSystem | undefined): Promise<void> {
    if (system === undefined || system.current === this.#lookedAt) return;
    const stored = await this.storedRecord();
    // Another writer's applying record (a deploy of this host) is not the agent's to change.
    if (stored?.state === "applying") return;
    this.#lookedAt = system.current;
    // Folded from what this agent last wrote (observationBase): whoever can write the store
    // would otherwise have the host sign a record of theirs. A record gone from the store is
    // written again.
    const base = observationBase(this.#written, stored);
    const next =
      stored === undefined
        ? observedRecord(base, this.self, system, this.#o.now())
        : runningRecord(base, this.self, system, this.#o.now());
    if (next !== undefined) await this.writeObserved(next);
  }

  /**
   * The host's record as the store has it, read only to leave another writer's apply alone:
   * one that does not read (malformed, or not a record) is no apply under way.
   */
  async storedRecord(): Promise<StatusRecord | undefined> {
    try {
      return await readStatus(this.#o.store, this.#o.host);
    } catch (err) {
      if (err instanceof InputError) return undefined;
      throw err;
    }
  }

  /**
   * Writes what the host runs now (switched by hand, or booted anew) into its record, folded
   * from this agent's last: the record alone, no release's marker (that says what the release
   * did; rollback reads the generation it reached there).
   */
  async writeObserved(record: StatusRecord): Promise<void> {
    const key = await this.#signingKeyOnce();
    await writeHostRecord(this.#o.store, record, key === "none" ? undefined : key);
    this.#lookedAt = record.current;
    this.#written = record;
  }

  /**
   * Runs `work` (an apply) and reports `applying()` once it has run reportApplyingAfter
   * seconds; the outcome's report waits for that write, so the applying record never lands last.
   */
  async reportingApplying<T>(
    applying: () => StatusRecord,
    work: () => Promise<T>,
    logLines: () => number = () => 0,
  ): Promise<T> {
    const after = this.#o.reportApplyingAfter ?? REPORT_APPLYING_AFTER;
    let written: Promise<void> | undefined;
    let writing = false;
    let reportedLines = -1;
    const report = () => {
      // One write at a time; lines that came meanwhile go with the next.
      if (writing) return;
      writing = true;
      reportedLines = logLines();
      written = this.writeRecord(applying())
        .catch((err: unknown) => {
          // The outcome's report is what counts; the store is met again there.
          const message = err instanceof Error ? err.message : String(err);
          this.#o.storeError(`reporting applying: ${message}`);
        })
        .finally(() => {
          writing = false;
        });
    };
    let again: NodeJS.Timeout | undefined;
    const start = () => {
      report();
      // Then again while new log lines come, every LOG_REPORT_EVERY seconds at most.
      again = setInterval(() => {
        if (logLines() !== reportedLines) report();
      }, LOG_REPORT_EVERY * 1000);
      again.unref();
    };
    if (after === 0) start();
    const timer = after === 0 ? undefined : setTimeout(start, after * 1000);
    timer?.unref();
    try {
      return await work();
    } finally {
      clearTimeout(timer);
      clearInterval(again);
      await written;
    }
  }

  /**
   * Runs `work` (an activation, which may outlast several heartbeat periods) with heartbeats:
   * each one period after the one before, the first one period after the last heartbeat
   * written before `work` began (not after `work` began: a poll that read, inspected and
   * fetched for a while before it would leave more than a period without one).
   */
  async whileBeating<T>(work: () => Promise<T>): Promise<T> {
    const period = this.heartbeatPeriod * 1000;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const beat = () => {
      this.heartbeat("running", true)
        .catch((err: unknown) => {
          // Not the activation's concern: the next heartbeat or the report meets the store again.
          const message = err instanceof Error ? err.message : String(err);
          this.#o.storeError(message, this.heartbeatPeriod);
        })
        .finally(() => schedule(period));
    };
    const schedule = (delay: number) => {
      if (stopped) return;
      timer = setTimeout(beat, Math.max(0, delay));
      timer.unref();
    };
    schedule(this.#beatAt === undefined ? period : this.#beatAt + period - performance.now());
    try {
      return await work();
    } finally {
      stopped = true;
      clearTimeout(timer);
    }
  }
}
