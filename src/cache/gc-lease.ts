// How a garbage collection and the pushes and deploys that write a cache stay out of each
// other's way, with objects in the store itself (no server, no database):
//
//   gc/lock.json           the collector's lock: one at a time (a conditional put)
//   gc/leases/<id>.json    one per push or deploy in progress, put again every LEASE_RENEW
//
// A writer puts its lease and THEN reads the lock; the collector puts the lock and THEN lists
// the leases. With the store's read-after-write consistency (S3's since 2020, a directory's
// always), at least one of the two sees the other: a writer that sees the lock takes its lease
// back and waits for the lock to go; a collector that sees a live lease takes its lock back and
// waits for the lease to go. So no collection sweeps while a nixship push or deploy runs, and
// the paths a push found already in the cache (and skipped) cannot be swept before the
// release or status record that roots them is written.
//
// Age is judged by the store's clock alone: an object's time in the store (its LIST, HEAD or
// GET time) against the time the store gave the judge's own object just put (the writer's
// lease, the collector's lock), never against the judge's clock, which may be wrong. A lease
// is live for LEASE_TTL after its last renewal, and a lock for LOCK_TTL after it was taken. A
// holder is judged dead before that only when the judge can prove its pid means the same
// process: the same boot (/proc/sys/kernel/random/boot_id) and the same pid namespace (the
// inode of /proc/self/ns/pid), and no such pid. A hostname and a pid alone prove nothing:
// containers and CI runners share hostnames, and each pid namespace numbers its processes
// anew. A collector stops deleting at LOCK_RUN, well before its lock can be judged stale, by
// the longer of its wall clock's and its monotonic clock's measures (the monotonic clock does
// not count a suspend; the wall clock may be set back).

import { randomBytes } from "node:crypto";
import { readFileSync, readlinkSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { InterruptedError, OperationError } from "../errors.js";
import { readBody } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { withoutControls } from "../util/text.js";

const GC_PREFIX = "gc/";
const LOCK_KEY = `${GC_PREFIX}lock.json`;
const LEASE_PREFIX = `${GC_PREFIX}leases/`;

/** A lease not renewed for this long belongs to a writer that died. */
export const LEASE_TTL_MS = 10 * 60_000;
const LEASE_RENEW_MS = 2 * 60_000;
/** A lock older than this belongs to a collector that died. */
export const LOCK_TTL_MS = 60 * 60_000;
/** A collector deletes nothing once it has held its lock this long. */
export const LOCK_RUN_MS = 50 * 60_000;
const POLL_MS = 2_000;
const HOLDER_LIMIT = 4096;

/** Who holds a lease or the lock, as its body says. */
export interface Holder {
  readonly what: string;
  /** user@host pid N, for messages. */
  readonly by: string;
  readonly since: string;
  /** The holder's machine and process: one on this machine that is gone holds nothing. */
  readonly host: string;
  readonly pid: number;
  /** The holder's boot id and pid namespace (undefined: unknown, so never judged by its pid). */
  readonly boot: string | undefined;
  readonly pidns: string | undefined;
}

/** A live lease as a waiting collector tells it: who, and why it is taken to be live. */
export interface LeaseHolder {
  readonly what: string;
  readonly by: string;
  readonly since: string;
  /** When the lease lapses unless it is renewed. */
  readonly lapsesAt: string;
  readonly why: string;
}

/** This process's boot and pid namespace, read once (undefined where /proc does not say). */
const SELF = {
  boot: safeRead(() => readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()),
  pidns: safeRead(() => /^pid:\[(\d+)\]$/.exec(readlinkSync("/proc/self/ns/pid"))?.[1]),
};

function safeRead(f: () => string | undefined): string | undefined {
  try {
    const v = f();
    return v === undefined || v === "" ? undefined : v.slice(0, 100);
  } catch {
    return undefined;
  }
}

export type LeaseEvent =
  | { readonly type: "waiting-for-gc"; readonly holder: Holder; readonly until: Date }
  | { readonly type: "lease-renew-failed"; readonly message: string };

export interface LeaseOptions {
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: LeaseEvent) => void;
  /** For tests: how long between polls while waiting (default 2 s). */
  readonly pollMs?: number;
  /** For tests: how long it waits for collections at most, all told (default LEASE_WAIT_MS). */
  readonly waitMs?: number;
  /** For tests: how often a lease is put again (default 2 min). */
  readonly renewMs?: number;
  /** For tests: how long without a renewal before a lease may have lapsed (default LAPSE_MS). */
  readonly lapseMs?: number;
}

/**
 * A lease not put again for this long may have lapsed in a collector's eyes: LEASE_TTL less a
 * minute, for a store clock and a monotonic clock that run at slightly different rates.
 */
const LAPSE_MS = LEASE_TTL_MS - 60_000;

/**
 * How long a push or deploy waits for collections, all told: two locks' lives. A lock held
 * longer, one after another, is a collection gone wrong, or one put there again and again by
 * whoever can write the store; the wait ends with an error that names it.
 */
export const LEASE_WAIT_MS = 2 * LOCK_TTL_MS;

function holderBody(what: string): Uint8Array {
  const by = `${safe(() => userInfo().username)}@${hostname()} pid ${process.pid}`;
  const since = new Date().toISOString();
  const { boot, pidns } = SELF;
  return Buffer.from(
    `${JSON.stringify({ what, by, since, host: hostname(), pid: process.pid, boot, pidns })}\n`,
  );
}

/**
 * Whether the holder's process is gone (a crash, a SIGKILL), as far as this process can prove:
 * "gone" only in the same boot and pid namespace with no such pid; "unknown" otherwise, and
 * the holder is then judged by its expiry alone.
 */
export function judgeHolder(holder: Holder): "gone" | "running" | "unknown" {
  if (holder.pid <= 0 || SELF.boot === undefined || SELF.pidns === undefined) return "unknown";
  if (holder.boot !== SELF.boot || holder.pidns !== SELF.pidns) return "unknown";
  if (holder.pid === process.pid) return "running";
  try {
    process.kill(holder.pid, 0);
    return "running";
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH" ? "gone" : "running";
  }
}

function whyLive(holder: Holder): string {
  if (judgeHolder(holder) === "running") return "its process runs";
  if (holder.boot === undefined || holder.pidns === undefined)
    return "its holder names no boot or pid namespace: held until the lease lapses";
  if (holder.boot !== SELF.boot)
    return "held on another machine or boot: held until the lease lapses";
  return "held in another pid namespace (a container?): held until the lease lapses";
}

function safe(f: () => string): string {
  try {
    return f();
  } catch {
    return "unknown";
  }
}

/**
 * A push's or deploy's lease on the cache: while held, no collection sweeps it. Taken after
 * any collection running now has finished (waiting at most until its lock goes stale).
 */
export class CacheLease {
  readonly #store: ObjectStore;
  readonly #key: string;
  readonly #body: Uint8Array;
  readonly #options: LeaseOptions;
  #timer: NodeJS.Timeout | undefined;
  #renewing: Promise<unknown> = Promise.resolve();
  /** When the last put that succeeded began (performance.now()); 0 before the first. */
  #lastPut = 0;
  /** Whether two puts that succeeded were ever further apart than a lease lives. */
  #gap = false;

  private constructor(store: ObjectStore, what: string, options: LeaseOptions) {
    this.#store = store;
    this.#key = `${LEASE_PREFIX}${randomBytes(12).toString("hex")}.json`;
    this.#body = holderBody(what);
    this.#options = options;
  }

  static async take(
    store: ObjectStore,
    what: string,
    options: LeaseOptions = {},
  ): Promise<CacheLease> {
    const lease = new CacheLease(store, what, options);
    await lease.#acquire();
    lease.#renewEvery();
    return lease;
  }

  /**
   * Whether the lease may have lapsed since it was taken (its renewals failed for about
   * LEASE_TTL, or the process stood still that long): a collection may have run meanwhile and
   * taken what the holder found in the cache.
   */
  get lapsed(): boolean {
    return this.#gap || performance.now() - this.#lastPut >= (this.#options.lapseMs ?? LAPSE_MS);
  }

  /**
   * After a lapse, takes the lease again as `take` does (waiting for a collection that runs to
   * finish) and says true: the holder must then look again at what it found in the cache before
   * it counts on it. False, and nothing done, while the lease held throughout.
   */
  async regain(): Promise<boolean> {
    if (!this.lapsed) return false;
    clearInterval(this.#timer);
    await this.#renewing;
    await this.#acquire();
    this.#gap = false;
    this.#renewEvery();
    return true;
  }

  #renewEvery(): void {
    const { onEvent } = this.#options;
    this.#timer = setInterval(() => {
      this.#renewing = this.#put().catch((err: unknown) =>
        onEvent?.({
          type: "lease-renew-failed",
          message: err instanceof Error ? err.message : String(err),
        }),
      );
    }, this.#options.renewMs ?? LEASE_RENEW_MS);
    this.#timer.unref();
  }

  /** Puts the lease, and holds it once no collection runs (waiting for one that does). */
  async #acquire(): Promise<void> {
    const store = this.#store;
    const options = this.#options;
    // Said once per collection waited for, not at every poll.
    let announced: string | undefined;
    const giveUpAt = performance.now() + (options.waitMs ?? LEASE_WAIT_MS);
    for (;;) {
      if (options.signal?.aborted) {
        throw new InterruptedError(`interrupted before a push or deploy could lease ${store.url}`);
      }
      await this.#put();
      // A store that fails right after the lease was put must not leave it holding off
      // collections: it goes, as best it can, before the failure is told.
      const lock = await (async () => readLock(store, await storeTime(store, this.#key)))().catch(
        async (err: unknown) => {
          await store.delete(this.#key).catch(() => {});
          throw err;
        },
      );
      if (lock === undefined || lock.stale) return;
      // A collection runs: step back so that it can finish, and wait for its lock to go.
      await store.delete(this.#key);
      if (performance.now() >= giveUpAt) {
        throw new OperationError(
          "gc-lock-held",
          `${store.url}: its garbage collection lock (gc/lock.json, by ${lock.holder.by} since ${lock.holder.since}) has stood for ${Math.round((options.waitMs ?? LEASE_WAIT_MS) / 60_000)} minutes of waiting: a collection gone wrong, or a lock written again and again`,
          {
            hint: "find the collection its holder names; once none runs, delete gc/lock.json (a lock lapses 60 minutes after it was put, unless put again)",
          },
        );
      }
      if (lock.etag !== announced) {
        announced = lock.etag;
        options.onEvent?.({ type: "waiting-for-gc", holder: lock.holder, until: lock.staleAt });
      }
      await sleep(options.pollMs ?? POLL_MS, undefined, { signal: options.signal }).catch(
        (err: unknown) => {
          throw new InterruptedError(
            `interrupted while waiting for the garbage collection of ${store.url}`,
            {
              hint: "nothing was written",
              cause: err,
            },
          );
        },
      );
    }
  }

  async #put(): Promise<void> {
    const started = performance.now();
    await this.#store.put(this.#key, this.#body, { contentType: "application/json" });
    const lapseMs = this.#options.lapseMs ?? LAPSE_MS;
    if (this.#lastPut !== 0 && started - this.#lastPut >= lapseMs) this.#gap = true;
    this.#lastPut = started;
  }

  /** Gives the lease back (a failure to delete it only delays collections by LEASE_TTL). */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    await this.#renewing;
    await this.#store.delete(this.#key).catch(() => undefined);
  }
}

interface LockRead {
  readonly holder: Holder;
  readonly etag: string;
  readonly staleAt: Date;
  readonly stale: boolean;
}

/**
 * The store's time now, as the time it gave the object just put at `key`; this machine's clock
 * only when the object is gone already (then the next look judges again).
 */
async function storeTime(store: ObjectStore, key: string): Promise<number> {
  return (await store.head(key))?.lastModified.getTime() ?? Date.now();
}

/** The lock, judged stale or not at `now` (the store's time). */
async function readLock(store: ObjectStore, now: number): Promise<LockRead | undefined> {
  const got = await store.get(LOCK_KEY);
  if (got === undefined) return undefined;
  const body = await readBody(got.body, LOCK_KEY, HOLDER_LIMIT).catch(() => Buffer.alloc(0));
  const staleAt = new Date(got.info.lastModified.getTime() + LOCK_TTL_MS);
  const holder = parseHolder(body);
  const stale = now >= staleAt.getTime() || judgeHolder(holder) === "gone";
  return { holder, etag: got.info.etag, staleAt, stale };
}

const UNKNOWN_HOLDER: Holder = {
  what: "unknown",
  by: "unknown",
  since: "unknown",
  host: "",
  pid: 0,
  boot: undefined,
  pidns: undefined,
};

function parseHolder(body: Uint8Array): Holder {
  try {
    const o = JSON.parse(Buffer.from(body).toString("utf8")) as Record<string, unknown>;
    // Shown on terminals: whoever can write the store wrote it, escape sequences and all.
    const text = (v: unknown) =>
      typeof v === "string" ? withoutControls(v.slice(0, 200)) : "unknown";
    const pid = Number.isSafeInteger(o.pid) ? (o.pid as number) : 0;
    const id = (v: unknown) => (typeof v === "string" && v !== "" ? v.slice(0, 100) : undefined);
    return {
      what: text(o.what),
      by: text(o.by),
      since: text(o.since),
      host: text(o.host),
      pid,
      boot: id(o.boot),
      pidns: id(o.pidns),
    };
  } catch {
    return UNKNOWN_HOLDER;
  }
}

export interface LockOptions extends LeaseOptions {
  /** How long to wait for pushes and deploys in progress to finish (ms). */
  readonly waitMs: number;
  /** Told at each poll while live leases hold the collection back. */
  readonly onWaitForLeases?: (holders: readonly LeaseHolder[]) => void;
}

/** The collector's hold on the cache: delete only while `check()` passes. */
export interface GcLock {
  /** The store's time when it put the lock (ms since the epoch): the collection's "now". */
  readonly storeTime: number;
  /** Throws once the lock has been held LOCK_RUN (a push may then judge it stale). */
  check(): void;
  release(): Promise<void>;
}

/**
 * Takes the collection lock once no push or deploy holds a live lease, waiting for them at most
 * `waitMs`. Another collection holding a live lock is an error (two at once gain nothing).
 */
export async function takeGcLock(store: ObjectStore, options: LockOptions): Promise<GcLock> {
  const deadline = performance.now() + options.waitMs;
  for (;;) {
    options.signal?.throwIfAborted();
    // The lock first, then the leases, judged by the time the store gave the lock: a writer
    // that puts its lease after this sees the lock and steps back.
    const taken = await putLock(store);
    const live = await liveLeases(store, taken.storeTime).catch(async (err: unknown) => {
      await taken.release().catch(() => undefined);
      throw err;
    });
    if (live.length === 0) return taken;
    // A push or deploy holds a lease: let it finish first.
    await taken.release();
    if (performance.now() >= deadline) {
      const shown = live
        .slice(0, 5)
        .map((h) => `${h.what} by ${h.by} since ${h.since} (${h.why}, at ${h.lapsesAt})`)
        .join("; ");
      throw new OperationError(
        "cache-busy",
        `${store.url}: ${live.length} push or deploy still holds a lease on the cache after ${Math.round(options.waitMs / 1000)} s: ${shown}${live.length > 5 ? "; …" : ""}`,
        {
          hint: `run the collection when no push or deploy runs, or wait longer (--wait); a lease that is not renewed lapses after ${LEASE_TTL_MS / 60_000} min`,
        },
      );
    }
    options.onWaitForLeases?.(live);
    await sleep(options.pollMs ?? POLL_MS, undefined, { signal: options.signal });
  }
}

/**
 * The live leases' holders at `now` (the store's time); a lease whose writer died (lapsed, or
 * proven gone) is tidied away.
 */
async function liveLeases(store: ObjectStore, now: number): Promise<LeaseHolder[]> {
  const live: LeaseHolder[] = [];
  let token: string | undefined;
  do {
    const page = await store.list(LEASE_PREFIX, token === undefined ? {} : { token });
    for (const o of page.objects) {
      const lapsesAt = o.lastModified.getTime() + LEASE_TTL_MS;
      const holder = now >= lapsesAt ? undefined : await leaseHolder(store, o.key);
      if (holder === undefined || judgeHolder(holder) === "gone") await store.delete(o.key);
      else
        live.push({
          what: holder.what,
          by: holder.by,
          since: holder.since,
          lapsesAt: new Date(lapsesAt).toISOString(),
          why: whyLive(holder),
        });
    }
    token = page.nextToken;
  } while (token !== undefined);
  return live;
}

/** A lease's holder as its body says (undefined: the lease is gone). */
async function leaseHolder(store: ObjectStore, key: string): Promise<Holder | undefined> {
  const got = await store.get(key);
  if (got === undefined) return undefined;
  const body = await readBody(got.body, key, HOLDER_LIMIT).catch(() => Buffer.alloc(0));
  return parseHolder(body);
}

async function putLock(store: ObjectStore): Promise<GcLock> {
  const body = holderBody("gc");
  let put = await store.put(LOCK_KEY, body, {
    contentType: "application/json",
    condition: { ifAbsent: true },
  });
  if (put.status === "precondition-failed") {
    // (Another collector's lock, judged by this machine's clock: this collector has put nothing
    // of its own to ask the store's time with.)
    const held = await readLock(store, Date.now());
    if (held !== undefined && !held.stale) {
      throw new OperationError(
        "gc-running",
        `${store.url}: another garbage collection holds the cache (${held.holder.by}, since ${held.holder.since})`,
        {
          hint: `wait for it to finish; a collector that died lets go after ${LOCK_TTL_MS / 60_000} min (${held.staleAt.toISOString()})`,
        },
      );
    }
    // Its holder died: take it over, unless another collector does so first.
    put = await store.put(LOCK_KEY, body, {
      contentType: "application/json",
      condition: held === undefined ? { ifAbsent: true } : { ifMatch: held.etag },
    });
    if (put.status === "precondition-failed") {
      throw new OperationError(
        "gc-running",
        `${store.url}: another garbage collection took the cache first`,
        {
          hint: "wait for it to finish",
        },
      );
    }
  }
  const etag = put.etag;
  const start = performance.now();
  const startWall = Date.now();
  // The lock just put is this collector's: a store that fails before it is handed over must
  // not leave it standing (pushes and deploys would wait an hour for it to lapse).
  const lockTime = await storeTime(store, LOCK_KEY).catch(async (err: unknown) => {
    await store.delete(LOCK_KEY).catch(() => {});
    throw err;
  });
  return {
    storeTime: lockTime,
    check() {
      // The longer measure: the monotonic clock does not count a suspend, and the wall clock
      // may be set back.
      const held = Math.max(performance.now() - start, Date.now() - startWall);
      if (held >= LOCK_RUN_MS) {
        throw new OperationError(
          "gc-lock-expired",
          `the garbage collection of ${store.url} ran ${LOCK_RUN_MS / 60_000} min and stopped deleting, before its lock could lapse`,
          { hint: "run it again to carry on: what it deleted so far left the cache consistent" },
        );
      }
    },
    async release() {
      const now = await store.head(LOCK_KEY);
      if (now?.etag === etag) await store.delete(LOCK_KEY);
    },
  };
}
