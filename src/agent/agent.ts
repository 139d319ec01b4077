// The pull agent's logic: poll the channel with conditional GETs, verify the release, find this
// host's entry, activate it once, and report. A release that failed here is not retried until a
// newer one appears; a release that is not signed by a trusted key, does not parse, or is older
// than one already applied is refused and reported. After a crash mid-activation the state
// file still says "applying", and the release is applied again (activate.sh is idempotent and
// takes over the lock of a killed run).
// Why one long file: it is one class whose steps (poll, apply, conclude, after a reboot, reject)
// share its state (channel, keys, state file, reporter) and its one order of writes; reporting
// (agent-reporter.ts), records (agent-records.ts), activation (activator.ts) and the verdict on a
// release head (head-verdict.ts) live apart.
import { createHash, randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { getSecretsBundle } from "../channel/secrets-store.js";
import { InputError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import { DEFAULT_ACTIVATION_TIMEOUT } from "../host/activation.js";
import {
  buildDeployRequest,
  type DeployRequest,
  type HostSecrets,
} from "../host/activation-session.js";
import type { PublicKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import {
  checksFor,
  type ReleaseHead,
  type ReleaseHost,
  type ReleaseHostPolicy,
  type ReleaseReboot,
  type SignedHead,
} from "../release/release.js";
import { releaseDigest } from "../release/release-canonical.js";
import { claimedSeq, verifyReleaseHead } from "../release/release-sign.js";
import { readChannel } from "../release/release-store.js";
import { readHostEntry } from "../release/shard-store.js";
import { successorSigned } from "../release/signed-release-reads.js";
import { APPLYING, LogTail, outcomeFields, type StatusRecord } from "../status/status.js";
import type { ObjectStore } from "../store/object-store.js";
import { clipped } from "../util/text.js";
import type { Activator, Applied, HostSystem } from "./activator.js";
import {
  type AgentSelf,
  dryRun,
  observationBase,
  observedRecord,
  type RecordWhat,
  type ReleaseReport,
  refusedRecord,
  releaseRecord,
} from "./agent-records.js";
import { AgentReporter } from "./agent-reporter.js";
import { headVerdict } from "./head-verdict.js";
import { type AgentState, isPaused, loadState, saveState } from "./state.js";

/** The keys an agent trusts: on the releases it follows, and on what its host's Nix substitutes. */
export interface AgentTrust {
  readonly releaseKeys: readonly PublicKey[];
  /** `name:base64` keys the host's Nix requires on what it substitutes. */
  readonly cacheKeys: readonly string[];
}

export interface AgentOptions extends AgentTrust {
  readonly store: ObjectStore;
  readonly channel: string;
  /** This host's name in releases. */
  readonly host: string;
  /**
   * The keys as the agent's config says them now, asked before each poll (a NixOS switch
   * rewrites the config and leaves the agent running); undefined: as they were.
   */
  readonly trustNow?: () => Promise<AgentTrust | undefined>;
  /** The store path of the nixship package this agent runs, when it runs from the store. */
  readonly package?: string | undefined;
  /** Where the host's Nix substitutes from (the agent's loopback cache proxy). */
  readonly substituters: readonly string[];
  readonly stateDir: string;
  readonly activator: Activator;
  /**
   * Seconds an activation may take up to the end of its switch before the host stops it and
   * goes back (default DEFAULT_ACTIVATION_TIMEOUT).
   */
  readonly activationTimeout?: number;
  /** Seconds between polls, and the ± fraction of it drawn at random each time. */
  readonly pollInterval: number;
  readonly jitter: number;
  /**
   * Polls between two heartbeats (default DEFAULT_HEARTBEAT_EVERY): one small PUT per this
   * many polls, and one when the agent pauses or resumes (status/heartbeat.ts).
   */
  readonly heartbeatEvery?: number;
  /**
   * Seconds an apply runs before the agent reports it as applying (default
   * REPORT_APPLYING_AFTER); an apply that ends sooner reports only its outcome.
   */
  readonly reportApplyingAfter?: number;
  /**
   * The host's SSH host public key file, published once to the store (`status/host-keys/`)
   * so that `nixship secrets rekey` can encrypt to a host the fleet names no `hostKey` for;
   * undefined: nothing is published.
   */
  readonly hostKeyFile?: string;
  /**
   * The host's SSH host private key file (ed25519; what its secrets are decrypted with), which
   * signs its status reports so that whoever can write the store cannot report for it;
   * undefined: reports go unsigned.
   */
  readonly signingKeyFile?: string;
  readonly emit?: (event: AgentEvent) => void;
  readonly random?: () => number;
  readonly now?: () => Date;
}

export type PollOutcome =
  | "paused"
  | "no-release"
  | "unchanged"
  | "rejected"
  | "no-entry"
  | "applied"
  | "failed"
  | "busy"
  /** A reboot into the release's system is under way (judged by the agent after the boot). */
  | "rebooting"
  /**
   * The agent is stopping, and the signal that stops it stopped the activation too (a
   * `systemctl kill`, which signals the whole unit): applied again when the agent starts.
   */
  | "interrupted";

/** Why a release was refused: its signature, sequence or expiry (verify), or its secrets. */
type Refusal =
  | { readonly phase: "verify"; readonly desired: null }
  | {
      /** secrets: its bundle; realise: its closure, which the store could not give whole. */
      readonly phase: "secrets" | "realise";
      readonly desired: string;
      /** The host's system when the apply began. */
      readonly current: HostSystem | undefined;
    };

export type AgentEvent =
  | { readonly type: "started"; readonly host: string; readonly channel: string }
  | { readonly type: "recovering"; readonly seq: number; readonly path: string }
  | { readonly type: "paused" }
  | { readonly type: "release"; readonly seq: number; readonly kind: ReleaseHead["kind"] }
  | { readonly type: "rejected"; readonly message: string }
  | { readonly type: "no-entry"; readonly seq: number }
  | { readonly type: "applying"; readonly seq: number; readonly path: string }
  | { readonly type: "log"; readonly line: string }
  | { readonly type: "applied"; readonly seq: number; readonly generation: number | null }
  | {
      readonly type: "failed";
      readonly seq: number;
      readonly message: string;
      readonly rolledBack: boolean;
    }
  | { readonly type: "busy"; readonly message: string }
  | { readonly type: "interrupted"; readonly seq: number; readonly message: string }
  | { readonly type: "rebooting"; readonly seq: number; readonly path: string }
  | { readonly type: "rebooted"; readonly seq: number; readonly booted: string | null }
  | { readonly type: "warning"; readonly message: string }
  /** The config's keys changed: the names of those trusted from now on. */
  | {
      readonly type: "trust-changed";
      readonly releaseKeys: readonly string[];
      readonly cacheKeys: readonly string[];
    }
  | {
      readonly type: "store-error";
      readonly message: string;
      /** Seconds to the next try; none when the write is not tried again on its own. */
      readonly retryIn?: number;
    };

/** Longest wait between polls after repeated store errors. */
const MAX_BACKOFF_SECONDS = 600;
/** The longest refusal an agent keeps and reports (status/rollout.ts keeps a host's as long). */
const REFUSAL_MESSAGE = 2000;

export class Agent {
  readonly #o: AgentOptions;
  /** The keys trusted now: the options', then the config's as it changes. */
  #trust: AgentTrust;
  readonly #emit: (event: AgentEvent) => void;
  #state: AgentState | undefined;
  /** What the host last said it is busy with, while it is: said once, not at every retry. */
  #busy: string | undefined;
  /** The etag of a channel body that did not parse once: it is read again before refusal. */
  #unparsedEtag: string | undefined;
  /** Whether the last poll left such a body to be read again (it said "unchanged"). */
  #readAgain = false;
  /** Whether this process looked at the host's boot yet (its first poll does). */
  #bootSeen = false;
  /** Aborted once the agent is asked to stop (the poll under way lets its activation end). */
  #stopping: AbortSignal | undefined;
  /** What the agent writes of itself: host key, heartbeats, its status record. */
  readonly #report: AgentReporter;

  constructor(options: AgentOptions) {
    this.#o = options;
    this.#trust = { releaseKeys: options.releaseKeys, cacheKeys: options.cacheKeys };
    const emit = options.emit ?? (() => {});
    this.#emit = emit;
    this.#report = new AgentReporter({
      ...options,
      lastSeq: () => this.#state?.lastSeq ?? null,
      now: () => this.#now(),
      warn: (message) => emit({ type: "warning", message }),
      storeError: (message, retryIn) =>
        emit({ type: "store-error", message, ...(retryIn === undefined ? {} : { retryIn }) }),
    });
  }

  /** Seconds between two heartbeats at most (what readers allow for before "offline"). */
  get heartbeatPeriod(): number {
    return this.#report.heartbeatPeriod;
  }

  /** Loads the state file; an interrupted activation is applied again on the next poll. */
  async start(): Promise<void> {
    let state = await loadState(this.#o.stateDir);
    // A reboot the agent began is judged by the first poll (after-boot), not applied again.
    if (state.applying !== null && state.applying.reboot === undefined) {
      const { seq, digest, path } = state.applying;
      this.#emit({ type: "recovering", seq, path });
      // Kept in the state file until an apply concludes (state.ts): a second restart before
      // then still knows it. Read the channel afresh: it still holds that release (applied
      // again now) or a newer one.
      state = { ...state, etag: null, applying: null, interrupted: { seq, digest, path } };
      await saveState(this.#o.stateDir, state);
    }
    // Started with other keys than the channel was last judged under (its config changed while
    // it was stopped): the first poll reads the channel afresh, and a release refused (or
    // taken) under those keys is judged again with these.
    this.#state =
      state.etag !== null && state.etagTrust !== trustDigest(this.#trust)
        ? { ...state, etag: null }
        : state;
    // The record the next is folded from (status/next-record.ts), as this agent last wrote it:
    // a dry run's report, on its release's marker alone, is not the host's record.
    const unreported =
      state.unreported !== null && !dryRun(state.unreported) ? state.unreported : undefined;
    this.#report.resume(unreported ?? state.reported ?? undefined);
    this.#emit({ type: "started", host: this.#o.host, channel: this.#o.channel });
  }

  get state(): AgentState {
    if (this.#state === undefined) throw new Error("Agent.start() first");
    return this.#state;
  }

  /**
   * Whether the last poll read a channel body that did not parse, and left it to the next poll
   * to read once more before refusing it (a torn read heals so): its "unchanged" is not the
   * channel's word.
   */
  get readsAgain(): boolean {
    return this.#readAgain;
  }

  /**
   * One poll: at most one conditional GET, at most one activation, and a heartbeat when one is
   * due (every `heartbeatEvery` polls, or the agent paused or resumed since the last one).
   * `stopping`: aborted when the agent is asked to stop, which the poll does not obey (an
   * activation in progress ends first) but heeds in how it records one that the same signal
   * interrupted on the host.
   */
  async pollOnce(stopping?: AbortSignal): Promise<PollOutcome> {
    this.#stopping = stopping;
    const o = this.#o;
    if (this.#state === undefined) await this.start();
    this.#readAgain = false;
    await this.#takeTrust();
    // A record whose write failed goes first, whatever this poll then does (paused, a boot to
    // judge): until it is written, the store's views say less than the heartbeat's lastSeq.
    if (this.state.unreported !== null) {
      await this.#report.writeRecord(this.state.unreported);
      await this.#save({ ...this.state, unreported: null, reported: this.#reported });
    }
    if (await isPaused(o.stateDir)) {
      this.#emit({ type: "paused" });
      await this.#report.heartbeat("paused");
      return "paused";
    }
    await this.#report.publishHostKey();
    if (!this.#bootSeen) {
      this.#bootSeen = true;
      if (!this.state.applying?.reboot) await this.#reportNewBoot();
    }
    const outcome = this.state.applying?.reboot
      ? await this.#afterReboot()
      : ((await this.#awaitRebootBack()) ?? (await this.#poll()));
    if (await this.#report.heartbeat("running")) await this.#reportRunning();
    return outcome;
  }

  /**
   * The keys the config names now, when they changed: trusted from this poll on, and the
   * channel read afresh, so that what was taken or refused under the old keys is judged again
   * (a dropped key's release is no longer followed; a release of a key added is).
   */
  async #takeTrust(): Promise<void> {
    const next = await this.#o.trustNow?.();
    if (next === undefined || sameTrust(next, this.#trust)) return;
    this.#trust = next;
    this.#emit({
      type: "trust-changed",
      releaseKeys: next.releaseKeys.map((k) => k.name),
      cacheKeys: next.cacheKeys.map((k) => k.split(":")[0] ?? k),
    });
    if (this.state.etag !== null) await this.#save({ ...this.state, etag: null });
  }

  /**
   * With each heartbeat: when the host runs another system than its record says (someone
   * switched it by hand, as nixos-rebuild does), the record is written again with what it runs,
   * so that `nixship status` and the dashboard see its drift. One `activate.sh status`; one GET
   * and one PUT only when what it runs changed since the last look.
   */
  async #reportRunning(): Promise<void> {
    if (this.state.lastSeq === null || this.state.applying) return;
    await this.#report.reportRunning(await this.#o.activator.inspect().catch(() => undefined));
  }

  async #poll(): Promise<PollOutcome> {
    const o = this.#o;
    const state = this.state;
    const read = await readChannel(o.store, o.channel, {
      ...(state.etag !== null ? { ifNoneMatch: state.etag } : {}),
    });
    if (read.status === "absent") return "no-release";
    if (read.status === "not-modified") return "unchanged";

    let signed: SignedHead;
    try {
      // A sharded release's head: its signature covers the digests of its shards.
      signed = verifyReleaseHead(read.bytes, this.#trust.releaseKeys, `channels/${o.channel}.json`);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      // A body that does not parse may be a read torn by a store that is not atomic (the
      // etag is the whole object's): read it once more before refusing it, and with it every
      // later read of that etag.
      if (err.code === "release-malformed" && this.#unparsedEtag !== read.etag) {
        this.#unparsedEtag = read.etag;
        this.#readAgain = true;
        return "unchanged";
      }
      // A key this agent does not trust: the fix is on this host, which the deploy's operator
      // reads in the refusal.
      const message =
        err.code === "release-untrusted-key"
          ? `${err.message}; this host follows it once its agent's releaseKeys name that key (services.nixship-agent.releaseKeys; taken at the agent's next poll)`
          : err.message;
      return this.#reject(read.etag, message, {
        seq: claimedSeq(read.bytes),
        digest: releaseDigest(read.bytes),
      });
    }
    // From here on only the release's head, its digest and this host's entry are kept: not
    // the bytes, nor every host's entry, across the reads and writes that follow (an agent
    // may hold them for a whole activation).
    const { etag } = read;
    const { digest } = signed;
    const release = signed.head;
    const verdict = headVerdict(release, digest, o.channel, state, new Date(this.#now()));
    if (verdict.kind === "unchanged") {
      // The channel is back to the release this host acted on, after a refused document: its
      // record says that release's outcome again, not the refusal.
      const before = state.beforeRefusal;
      if (state.refused != null && before != null && before.seq === state.lastSeq) {
        await this.#reportAndSave(
          { ...state, etag, refused: null, beforeRefusal: null },
          { ...before, updatedAt: this.#now() },
        );
        return "unchanged";
      }
      await this.#save({ ...state, etag, refused: null, beforeRefusal: null });
      return "unchanged";
    }
    if (verdict.kind === "refuse") {
      return this.#reject(etag, verdict.why, { seq: verdict.seq, digest });
    }
    // A release newer than the host's last is held to the release files too, so that a replayed
    // channel is not taken (one GET a new release): a host with no state (new, or reimaged) has
    // no last release to hold it to, and one with state would take any release it skipped (an
    // older signed one copied over the channel, while a newer, a fix, is on file).
    if (await successorSigned(o.store, o.channel, this.#trust.releaseKeys, release.seq)) {
      return this.#reject(
        etag,
        `the channel names release ${release.seq}, but release ${release.seq + 1} of channel "${o.channel}" exists and is signed: a replayed or frozen channel is not followed; the publisher moves the channel on with a new release`,
        { seq: release.seq, digest },
      );
    }
    // This host's entry: in the file, or in its own shard of a sharded release (one GET, checked
    // against the digest the head signs, every entry of it checked); its own shard missing,
    // changed or laid out wrong is refused. The other shards are left to the full readers: the
    // signature already trusts the signer with every entry, and reading them all would cost each
    // agent O(hosts) per release.
    let entry: ReleaseHost | undefined;
    try {
      entry = await readHostEntry(o.store, signed, o.host);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      return this.#reject(etag, err.message, { seq: release.seq, digest });
    }
    this.#emit({ type: "release", seq: release.seq, kind: release.kind });
    if (entry === undefined) {
      this.#emit({ type: "no-entry", seq: release.seq });
      const next: AgentState = {
        ...state,
        etag,
        lastSeq: release.seq,
        lastDigest: digest,
        lastResult: "no-entry",
        refused: null,
        interrupted: null,
      };
      const begun = state.interrupted;
      if (begun == null) {
        await this.#save(next);
        return "no-entry";
      }
      // An activation began here and was interrupted (the agent or the host stopped mid-apply),
      // and this release names the host no more: the deploy withdrew that apply (a wave's
      // rollback of hosts it gave their first system). The record, which said applying it for
      // good, now says it ended there, failed, and what the host runs.
      const system = await this.#inspect();
      const now = this.#now();
      const withdrawn = releaseRecord(
        this.#report.written,
        this.#self,
        {
          release: { channel: o.channel, seq: begun.seq },
          path: begun.path,
          what: {
            state: "failed",
            phase: this.#report.written?.phase ?? null,
            error: `its activation of release ${begun.seq} was interrupted here, and release ${release.seq} names no entry for this host: that apply is withdrawn; the host runs ${system?.current ?? "no system"}`,
            rolledBack: false,
          },
          system,
          startedAt: now,
          previous: undefined,
        },
        now,
      );
      await this.#reportAndSave(next, withdrawn);
      return "no-entry";
    }
    return this.#apply(etag, release, digest, entry);
  }

  /** Polls until `signal` aborts, every interval ± jitter, backing off on store errors. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      let wait: number;
      try {
        const outcome = await this.pollOnce(signal);
        failures = 0;
        wait = this.#interval();
        // A busy host (another activation holds the lock) is asked again soon.
        if (outcome === "busy") wait = Math.min(wait, 5);
      } catch (err) {
        if (err instanceof InputError && err.code === "bad-agent-state") throw err;
        failures++;
        wait = Math.min(MAX_BACKOFF_SECONDS, this.#o.pollInterval * 2 ** Math.min(failures, 10));
        const message = err instanceof Error ? err.message : String(err);
        this.#emit({ type: "store-error", message, retryIn: wait });
      }
      // An abort ends the wait early; the loop then stops.
      await delay(wait * 1000, undefined, { signal }).catch(() => {});
    }
  }

  async #apply(
    etag: string,
    release: ReleaseHead,
    digest: string,
    entry: ReleaseHost,
  ): Promise<PollOutcome> {
    const { path } = entry;
    const dry = release.action === "dry-activate";
    // A refresh only signs the channel's release again: it asks nothing new of the host, and
    // the views judge a rollout's ask past it (status/behind.ts). A dry run's report is not the
    // host's record: nothing to judge.
    const carried = !dry && release.kind === "refresh";
    const startedAt = this.#now();
    // A host already running the entry (an earlier wave's release, a rollback release that
    // names the system it went back to, a refresh) has nothing to do.
    const before = await this.#inspect();
    const keepsProfile = release.action === "test" || release.action === "dry-activate";
    const already =
      this.state.interrupted?.path !== path &&
      before?.current === path &&
      (keepsProfile || before.profile === path) &&
      (entry.secrets === undefined || before.secrets === entry.secrets.manifest);
    this.#emit({ type: "applying", seq: release.seq, path });
    // The activation's newest log lines go into the records, for the deployer to show.
    const log = new LogTail();
    const record = (what: RecordWhat, system: HostSystem | undefined) =>
      this.#record({
        release,
        path,
        what: { ...what, ...(log.count > 0 ? { log: log.log } : {}) },
        system,
        startedAt,
        // The system it ran before, when it moves; one already running the entry keeps its own.
        previous: before?.current === path ? undefined : (before?.current ?? null),
        ...(carried ? { carried: true as const } : {}),
        ...(dry ? { dryRun: true as const } : {}),
      });
    // The host's own checks where its entry has them (policy per role), else the release's.
    const checks = checksFor(release, entry);
    const reboot = release.action === "switch" ? entry.reboot : undefined;
    const request = (secrets: HostSecrets | undefined): DeployRequest =>
      this.#request(path, release.action, checks, reboot, secrets, entry.deltaTool);
    // The secrets bundle is fetched and checked before anything runs. One that is missing or
    // changed in the store is the store's fault, not the system's: the release is refused (a
    // rejection says nothing of a system, so the next release may name it again unflagged).
    // A dry-activate carries none (buildDeployRequest): its bundle is not fetched either.
    const secrets =
      already || release.action === "dry-activate"
        ? { given: undefined }
        : await this.#secrets(entry);
    if ("failed" in secrets) {
      return this.#reject(
        etag,
        secrets.failed,
        { seq: release.seq, digest },
        {
          phase: "secrets",
          desired: path,
          current: before,
        },
      );
    }
    // What will run is recorded first, so that an agent killed halfway applies it again in
    // full; where nothing runs (nothing yet while the bundle came, a host already running the
    // entry) there is nothing to record: a store that fails meanwhile leaves no apply to recover.
    if (!already) {
      await this.#save({
        ...this.state,
        applying: { seq: release.seq, digest, path, startedAt },
      });
    }
    const token =
      reboot === undefined ? undefined : `a${release.seq}${randomBytes(6).toString("hex")}`;
    const applied: Applied = already
      ? { status: "activated", generation: before?.generation ?? null }
      : await this.#activate(request(secrets.given), log, () => record(APPLYING, undefined), token);
    if (applied.status === "rebooting" && token !== undefined && reboot !== undefined) {
      // The host reboots in 2 s: what the agent started after the boot needs is saved first.
      await this.#saveAndReport(
        {
          ...this.state,
          applying: {
            seq: release.seq,
            digest,
            path,
            startedAt,
            reboot: {
              token,
              bootId: applied.bootId,
              since: this.#now(),
              timeout: reboot.timeout,
              rollback: reboot.rollback,
              generation: applied.generation ?? null,
              previous: applied.previous ?? null,
              checks,
            },
          },
        },
        record({ ...APPLYING, phase: "reboot" }, await this.#inspect()),
      );
      this.#emit({ type: "rebooting", seq: release.seq, path });
      return "rebooting";
    }
    if (applied.status === "rebooting") throw new Error("a reboot answered without a token");
    // Stopped by the signal that stops the agent (a `systemctl kill` reaches activate.sh too):
    // not this release's failure. The host went back; `applying` stays in the state file, so
    // that the agent applies the release again, in full, when it starts (as after a crash).
    if (applied.status === "failed" && applied.interruptedOnHost && this.#stopping?.aborted) {
      this.#emit({ type: "interrupted", seq: release.seq, message: applied.message });
      return "interrupted";
    }
    // A closure the store could not give (not there, unsigned, a corrupt copy: what a cache
    // writer without the keys can do) never ran: the store's fault, not the system's, refused
    // as a missing secrets bundle is, so that the system is not held failed on this host. A
    // realise the host stopped (its activation timeout, a signal) is no word on the store.
    if (
      applied.status === "failed" &&
      applied.phase === "realise" &&
      !applied.timedOutOnHost &&
      !applied.interruptedOnHost
    ) {
      return this.#reject(
        etag,
        applied.message,
        { seq: release.seq, digest },
        { phase: "realise", desired: path, current: await this.#inspect() },
      );
    }
    if (applied.status === "busy") {
      // Not this release's fault: try again soon; an interrupted release stays one that is
      // applied in full (what the killed run left may look current without being healthy).
      // The retries of one busy spell are said once, and written once.
      if (applied.message !== this.#busy) this.#emit({ type: "busy", message: applied.message });
      this.#busy = applied.message;
      if (this.state.etag !== null || this.state.applying !== null) {
        await this.#save({ ...this.state, etag: null, applying: null });
      }
      return "busy";
    }
    this.#busy = undefined;
    return this.#conclude(
      applied,
      { seq: release.seq, digest, etag },
      (what, system) => record(what, system),
      "report-first",
    );
  }

  /**
   * The request for `path`: the same builder the deployer uses, the host filled in as itself;
   * with the entry's delta tool, activate.sh realises it through this host's Nix from the
   * agent's proxy, the cache's signatures required, as it does the system (docs/deltas.md).
   */
  #request(
    path: StorePath,
    action: Action,
    checks: ReleaseHostPolicy,
    reboot: ReleaseReboot | undefined,
    secrets: HostSecrets | undefined,
    deltaTool?: StorePath,
  ): DeployRequest {
    const o = this.#o;
    return buildDeployRequest({
      path,
      action,
      substituters: o.substituters,
      trustedKeys: this.#trust.cacheKeys,
      checks,
      host: { name: o.host, address: "127.0.0.1" },
      activationTimeout: o.activationTimeout ?? DEFAULT_ACTIVATION_TIMEOUT,
      secrets,
      ...(reboot === undefined ? {} : { reboot }),
      deltaTool,
    });
  }

  /**
   * Saves and reports how a release ended here: after an apply, reported first and then saved
   * (#reportAndSave); after a boot's judgement, which cannot be made twice, saved first
   * (#saveAndReport). A boot undone by a reboot back (`rebootsFrom`) holds off the next
   * release until that reboot (`rebootTimeout` seconds at most).
   */
  async #conclude(
    applied: Exclude<Applied, { status: "busy" | "rebooting" }>,
    release: { readonly seq: number; readonly digest: string; readonly etag: string | null },
    record: (what: RecordWhat, system: HostSystem | undefined) => StatusRecord,
    order: "report-first" | "save-first" = "save-first",
    rebootTimeout = 0,
  ): Promise<PollOutcome> {
    const conclude = (state: AgentState, outcome: StatusRecord) =>
      order === "report-first"
        ? this.#reportAndSave(state, outcome)
        : this.#saveAndReport(state, outcome);
    const system = await this.#inspect();
    const ok = applied.status === "activated";
    const done: AgentState = {
      ...this.state,
      etag: release.etag,
      lastSeq: release.seq,
      lastDigest: release.digest,
      lastResult: ok ? "success" : "failed",
      refused: null,
      applying: null,
      interrupted: null,
      rebootingBack:
        applied.status === "failed" && applied.rebootsFrom !== undefined
          ? { bootId: applied.rebootsFrom, since: this.#now(), timeout: rebootTimeout }
          : null,
    };
    if (ok) {
      this.#emit({ type: "applied", seq: release.seq, generation: applied.generation });
      const pruned = applied.pruned === undefined ? {} : { pruned: applied.pruned };
      const delta = applied.delta === undefined ? {} : { delta: applied.delta };
      await conclude(done, record({ ...outcomeFields(applied), ...pruned, ...delta }, system));
      return "applied";
    }
    this.#emit({
      type: "failed",
      seq: release.seq,
      message: applied.message,
      rolledBack: applied.rolledBack,
    });
    await conclude(done, record(outcomeFields(applied), system));
    return "failed";
  }

  /**
   * In a boot other than the one its record describes (the host rebooted, nixship or not), the
   * record is written again with what the host runs now and what a reboot would load: the
   * deployer's plan decides `--reboot auto` from it. One GET and one PUT, once per boot.
   */
  async #reportNewBoot(): Promise<void> {
    // A host that cannot be read is said so by the poll that needs it (once, not twice).
    const system = await this.#o.activator.inspect().catch(() => undefined);
    const bootId = system?.bootId ?? null;
    if (system === undefined || bootId === null || bootId === (this.state.bootId ?? null)) return;
    if (this.state.lastSeq !== null) {
      // Another writer's apply under way is not the agent's to change; else the record is
      // folded from what this agent last wrote, never from the store's copy, which whoever
      // can write the store could have the host sign (docs/agent.md, "Signed reports").
      const stored = await this.#report.storedRecord();
      const next =
        stored?.state === "applying"
          ? undefined
          : observedRecord(
              observationBase(this.#report.written, stored),
              this.#self,
              system,
              this.#now(),
            );
      if (next !== undefined) await this.#report.writeObserved(next);
    }
    await this.#save({ ...this.state, bootId });
  }

  /**
   * "rebooting" while the host has yet to reboot into the previous system after a boot undone
   * (in the boot it reboots from, within the reboot timeout); undefined once it runs another
   * boot, or the timeout passed (said), and the channel is read again.
   */
  async #awaitRebootBack(): Promise<"rebooting" | undefined> {
    const back = this.state.rebootingBack;
    if (back === undefined || back === null) return undefined;
    const system = await this.#inspect();
    if (system === undefined || system.bootId === back.bootId) {
      const waited = (Date.parse(this.#now()) - Date.parse(back.since)) / 1000;
      if (waited <= back.timeout) return "rebooting";
      this.#emit({
        type: "warning",
        message: `the host did not reboot into the previous generation within ${back.timeout}s of its boot's undoing; reading the channel again`,
      });
    }
    await this.#save({ ...this.state, rebootingBack: null });
    return undefined;
  }

  /**
   * The agent runs again with a reboot pending: once the host runs another boot, the boot is
   * judged (after-boot, the checks, confirm-boot or abort-boot) and the release's outcome
   * reported; in the same boot, it waits, and reports a failure once the reboot timeout passed.
   */
  async #afterReboot(): Promise<PollOutcome> {
    const applying = this.state.applying;
    const reboot = applying?.reboot;
    if (applying === null || reboot === undefined) throw new Error("no reboot is pending");
    const channel = this.#o.channel;
    const log = new LogTail();
    const record = (what: RecordWhat, system: HostSystem | undefined) =>
      this.#record({
        release: { channel, seq: applying.seq },
        path: applying.path,
        what: { ...what, ...(log.count > 0 ? { log: log.log } : {}) },
        system,
        startedAt: applying.startedAt,
        previous: reboot.previous,
      });
    // The etag is unknown here: the next poll reads the channel afresh (and finds this release).
    const release = { seq: applying.seq, digest: applying.digest, etag: null };
    const into = `generation ${reboot.generation ?? "?"} (${applying.path})`;
    const system = await this.#inspect();
    if (system === undefined || system.bootId === reboot.bootId) {
      const waited = (Date.parse(this.#now()) - Date.parse(reboot.since)) / 1000;
      if (waited <= reboot.timeout) return "rebooting";
      // A host that cannot be read is not one known not to have rebooted (#inspect said why).
      const message =
        system === undefined
          ? `the host's system could not be read within ${reboot.timeout}s of the boot activation; its boot into ${into} was not judged`
          : `the host did not reboot within ${reboot.timeout}s of the boot activation; its next boot is ${into}`;
      return this.#conclude(
        { status: "failed", phase: "reboot", message, rolledBack: false },
        release,
        record,
      );
    }
    this.#emit({ type: "rebooted", seq: applying.seq, booted: system.current });
    // No boot pending under the token: this agent judged it (confirm-boot or abort-boot went
    // through) and stopped before it saved. No verb judges it again (each would answer
    // unknown-token), so what the host runs and boots next says how it ended.
    if (system.pendingBoot !== undefined && system.pendingBoot !== reboot.token) {
      const kept =
        system.current === applying.path &&
        system.profile === applying.path &&
        system.failed !== applying.path;
      this.#busy = undefined;
      return this.#conclude(
        kept
          ? { status: "activated", generation: system.generation }
          : {
              status: "failed",
              phase: "health",
              message: `the boot into ${into} was judged before the agent stopped, and not kept: the host runs ${system.current ?? "no system"}, and boots ${system.profile ?? "no system"} next`,
              rolledBack: system.profile !== applying.path,
            },
        release,
        record,
        "save-first",
        reboot.timeout,
      );
    }
    const request = this.#request(
      applying.path as StorePath,
      "switch",
      reboot.checks,
      { timeout: reboot.timeout, rollback: reboot.rollback },
      undefined,
    );
    const applied = await this.#report.reportingApplying(
      () => record({ ...APPLYING, phase: "health" }, system),
      () =>
        this.#report.whileBeating(() =>
          this.#o.activator.judgeBoot(
            request,
            reboot.token,
            {
              generation: reboot.generation ?? undefined,
              previous: reboot.previous ?? undefined,
              into,
            },
            (line) => {
              log.add(line);
              this.#emit({ type: "log", line });
            },
          ),
        ),
      () => log.count,
    );
    if (applied.status === "busy") {
      // Another activation holds the lock (its own deadline bounds it): the boot stays pending,
      // judged by a later poll; one busy spell is said once.
      if (applied.message !== this.#busy) this.#emit({ type: "busy", message: applied.message });
      this.#busy = applied.message;
      return "busy";
    }
    this.#busy = undefined;
    if (applied.status === "rebooting") {
      return this.#conclude(
        {
          status: "failed",
          phase: "reboot",
          message: "the boot was not judged",
          rolledBack: false,
        },
        release,
        record,
      );
    }
    return this.#conclude(applied, release, record, "save-first", reboot.timeout);
  }

  /**
   * Runs the activation, keeping its log lines in `log`, reporting the host as applying (again
   * as new lines come) and beating while it runs.
   */
  async #activate(
    request: DeployRequest,
    log: LogTail,
    reportApplying: () => StatusRecord,
    token?: string,
  ): Promise<Applied> {
    return this.#report.reportingApplying(
      reportApplying,
      () =>
        this.#report.whileBeating(() =>
          this.#o.activator.apply(
            request,
            (line) => {
              log.add(line);
              this.#emit({ type: "log", line });
            },
            token,
          ),
        ),
      () => log.count,
    );
  }

  /** The entry's secrets bundle from the store, checked against the digest the release signs. */
  async #secrets(
    entry: ReleaseHost,
  ): Promise<{ readonly given: HostSecrets | undefined } | { readonly failed: string }> {
    if (entry.secrets === undefined) return { given: undefined };
    const { bundle, manifest, age } = entry.secrets;
    try {
      const text = await getSecretsBundle(this.#o.store, this.#o.host, bundle);
      return { given: { bundle: text, digest: manifest, age } };
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      return { failed: err.message };
    }
  }

  /**
   * The host's system, or undefined when it cannot be read: the apply goes on (the activation
   * reads it again itself) and the report leaves it out, but the operator is told why.
   */
  async #inspect(): Promise<HostSystem | undefined> {
    try {
      return await this.#o.activator.inspect();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.#emit({ type: "warning", message: `cannot read the host's current system: ${message}` });
      return undefined;
    }
  }

  /**
   * Refuses what the channel holds, once per channel version, and says why in the status. A
   * release refused in the middle of its apply (its secrets, phase "secrets") ends that apply.
   */
  /**
   * Refuses the channel's document `claim` (the number it claims, if any, and its digest, which
   * the refusal names so that it is not taken for a refusal of another document of that number).
   */
  async #reject(
    etag: string,
    why: string,
    claim: { readonly seq: number | undefined; readonly digest: string },
    refusal: Refusal = { phase: "verify", desired: null },
  ): Promise<PollOutcome> {
    // The message may quote what the store's writer chose: it is kept (in the state file, the
    // status record, the event) clipped, without controls.
    const message = clipped(why, REFUSAL_MESSAGE);
    this.#emit({ type: "rejected", message });
    const system = refusal.phase === "verify" ? await this.#inspect() : refusal.current;
    const refused = { seq: claim.seq ?? null, reason: message, at: this.#now() };
    // The record the first refusal of a run replaces, for the channel's coming back.
    const beforeRefusal =
      this.state.refused == null
        ? (this.#report.written ?? null)
        : (this.state.beforeRefusal ?? null);
    await this.#reportAndSave(
      refusal.phase === "verify"
        ? { ...this.state, etag, refused, beforeRefusal }
        : { ...this.state, etag, refused, beforeRefusal, applying: null },
      refusedRecord(
        this.#report.written,
        this.#self,
        {
          channel: this.#o.channel,
          seq: claim.seq,
          digest: claim.digest,
          phase: refusal.phase,
          desired: refusal.desired,
          system,
          message,
        },
        this.#now(),
      ),
    );
    return "rejected";
  }

  /** A release's record, folded from the one this agent last wrote. */
  #record(report: ReleaseReport): StatusRecord {
    return releaseRecord(this.#report.written, this.#self, report, this.#now());
  }

  get #self(): AgentSelf {
    return this.#report.self;
  }

  /**
   * Saves `state` together with the record to report, then stores the record: a store that
   * fails here leaves the record in the state file, and the next poll reports it first, so
   * no outcome is lost (a failed release is still not applied again). For what must be on disk
   * before anything else happens: a reboot about to begin, a boot's judgement.
   */
  async #saveAndReport(state: AgentState, record: StatusRecord): Promise<void> {
    await this.#save({ ...state, unreported: record });
    await this.#report.writeRecord(record);
    await this.#save({ ...this.state, unreported: null, reported: this.#reported });
  }

  /**
   * Stores the record, then saves `state` with it: one state save (a fsynced file and its
   * directory) where #saveAndReport makes two. A store that fails here leaves the record in the
   * state file all the same, and the next poll reports it first. An agent killed before the
   * save finds the state file as it was before the record was made: in the middle of an apply
   * it applies that release again in full, as it does when killed during the activation; before
   * a refusal it reads and refuses the release again.
   */
  async #reportAndSave(state: AgentState, record: StatusRecord): Promise<void> {
    try {
      await this.#report.writeRecord(record);
    } catch (err) {
      await this.#save({ ...state, unreported: record });
      throw err;
    }
    await this.#save({ ...state, unreported: null, reported: this.#reported });
  }

  /** The host's record as this agent last wrote it (a dry run's report is none), for the state. */
  get #reported(): StatusRecord | null {
    return this.#report.written ?? null;
  }

  async #save(state: AgentState): Promise<void> {
    // The channel's etag is kept with the keys it was judged under.
    if (state.etag !== null) state = { ...state, etagTrust: trustDigest(this.#trust) };
    await saveState(this.#o.stateDir, state);
    this.#state = state;
  }

  #interval(): number {
    const r = (this.#o.random ?? Math.random)();
    return Math.max(0.05, this.#o.pollInterval * (1 + this.#o.jitter * (2 * r - 1)));
  }

  #now(): string {
    return (this.#o.now?.() ?? new Date()).toISOString();
  }
}

/** Whether two sets of keys are the same keys (names and bytes), in any order. */
function sameTrust(a: AgentTrust, b: AgentTrust): boolean {
  return trustDigest(a) === trustDigest(b);
}

/** A digest of the keys an agent trusts, the same for the same keys in any order. */
export function trustDigest(trust: AgentTrust): string {
  const keys = [
    ...trust.releaseKeys.map((k) => `release ${k.name}:${Buffer.from(k.bytes).toString("base64")}`),
    ...trust.cacheKeys.map((k) => `cache ${k}`),
  ].sort();
  return `sha256-${createHash("sha256").update(keys.join("\n")).digest("base64")}`;
}
