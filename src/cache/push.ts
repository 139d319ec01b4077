// Push a closure into a binary cache: serialise each NAR from the store, check it against the
// NarHash Nix recorded, compress and hash in one pass, upload the NAR, then commit the signed
// narinfo, only once the NAR is durable and the path's references are committed, so the cache
// is never inconsistent. Or (`pushNarsOnly`, on a build host) the NARs alone, the narinfos
// returned unsigned for the deployer to check, sign and commit (cache/commit-narinfos.ts).
import { rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { basename, join } from "node:path";
import { InterruptedError, OperationError } from "../errors.js";
import { type PathInfo, referencesFirst } from "../nix/closure.js";
import type { Sha256 } from "../nix/hash.js";
import type { SecretKey } from "../nix/keys.js";
import { type Compression, formatNarInfo, type NarInfo, signNarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit, Semaphore } from "../util/pool.js";
import { ensureCacheInfo, requireCacheInfo } from "./cache-info.js";
import { DEFAULT_LEVEL } from "./compression.js";
import { FlushBatches } from "./flush-batch.js";
import { CacheLease, type LeaseOptions } from "./gc-lease.js";
import { narInfoKey, narKey } from "./layout.js";
import { confirmFoundAfterLapse } from "./lease-lapse.js";
import { type NixOptions, queryClosure } from "./local-nix.js";
import { checkNar } from "./nar-check.js";
import { writeNar } from "./nar-pipeline.js";
import { INLINE_NAR_BYTES, InlineNarWriter, NarPool, type NarWriter } from "./nar-pool.js";
import { resignPresent } from "./resign.js";
import { Spool } from "./spool.js";

export interface PushOptions {
  readonly store: ObjectStore;
  readonly roots: readonly StorePath[];
  readonly key: SecretKey;
  readonly compression: Compression;
  /** Compression level; zstd 3 (Nix's own) and xz 6 by default. */
  readonly level?: number;
  /** Paths serialised and uploaded at once. */
  readonly jobs?: number;
  /**
   * A push of at most this many NAR bytes (default INLINE_NAR_BYTES) writes its zstd or
   * uncompressed NAR files on the main thread instead of starting worker threads.
   */
  readonly inlineNarBytes?: number;
  readonly nix?: NixOptions;
  /** Make the cache (its nix-cache-info) when there is none; otherwise there must be one. */
  readonly createCache?: boolean;
  /** Also sign, with `key`, the narinfos of paths the cache already has (cache/resign.ts). */
  readonly resign?: boolean;
  readonly onEvent?: (event: PushEvent) => void;
  /** Given the closure the push read from Nix, once read (a deploy's survey reuses it). */
  readonly onClosure?: (closure: readonly PathInfo[]) => void;
  /**
   * Aborted (an interrupt): no new path is started; the paths in progress finish, what is
   * committed is published, the staging directory is removed, and the push fails with an
   * InterruptedError.
   */
  readonly signal?: AbortSignal;
  /**
   * Hold a lease on the cache (gc-lease.ts) from before the push looks at what the cache has
   * until it ends, so that no collection sweeps a path it found there; its waits are told to
   * `onEvent`. Should it lapse (its renewals failed for ten minutes), the push looks again at
   * the end at what it had found (lease-lapse.ts). A caller that holds its own lease for longer
   * (a deploy) leaves this unset.
   */
  readonly lease?: Pick<LeaseOptions, "onEvent" | "lapseMs">;
}

export type PushEvent =
  | { readonly type: "closure"; readonly paths: number; readonly narBytes: number }
  | {
      readonly type: "plan";
      readonly toPush: number;
      readonly present: number;
      readonly narBytes: number;
    }
  | { readonly type: "bytes"; readonly narBytes: number }
  | {
      readonly type: "path-pushed";
      readonly path: StorePath;
      readonly narSize: number;
      readonly fileSize: number;
    };

/** What a push without its narinfos stored (`pushNarsOnly`) is given: no key, no cache made. */
export type NarsOnlyOptions = Omit<PushOptions, "key" | "resign" | "createCache">;

/** What the deployer is to commit: each stored NAR's narinfo, unsigned, and what the cache had. */
export interface NarsOnlySummary extends PushSummary {
  /** In references-first order. */
  readonly unsigned: readonly NarInfo[];
  /** The closure's paths whose narinfo the cache already had. */
  readonly presentPaths: readonly StorePath[];
}

export interface PushSummary {
  readonly paths: number;
  readonly pushed: number;
  readonly alreadyPresent: number;
  /** Paths already there whose narinfo --resign signed with the key (0 without it). */
  readonly resigned: number;
  readonly narBytes: number;
  readonly fileBytes: number;
  readonly seconds: number;
  /** NAR megabytes (10^6) per second over the whole push. */
  readonly narMBps: number;
  readonly compression: Compression;
  readonly pushedPaths: readonly StorePath[];
  /** Set when the push made the cache: its URL held no nix-cache-info (createCache). */
  readonly createdCache?: true;
}

const NAR_TYPE = "application/x-nix-nar";
/** Memory each finished path may use to hold its compressed NAR before spilling to disk. */
const SPOOL_MEMORY = 8 << 20;

export function pushClosure(options: PushOptions): Promise<PushSummary> {
  return runPush(options, { kind: "sign", key: options.key });
}

/**
 * Stores the NARs of the closure's paths the cache lacks, as pushClosure does, but writes no
 * narinfo: each is returned unsigned, for the signing key's holder to check and commit. The
 * cache must exist already.
 */
export async function pushNarsOnly(options: NarsOnlyOptions): Promise<NarsOnlySummary> {
  const unsigned: NarInfo[] = [];
  let presentPaths: StorePath[] = [];
  const summary = await runPush(options, {
    kind: "nars-only",
    stored: (narInfo) => unsigned.push(narInfo),
    present: (paths) => {
      presentPaths = paths;
    },
  });
  const order = new Map(summary.pushedPaths.map((p, i) => [p, i]));
  unsigned.sort((a, b) => (order.get(a.storePath) ?? 0) - (order.get(b.storePath) ?? 0));
  return { ...summary, unsigned, presentPaths };
}

/** What becomes of a stored NAR: its narinfo signed and committed, or handed back unsigned. */
type Committer =
  | { readonly kind: "sign"; readonly key: SecretKey }
  | {
      readonly kind: "nars-only";
      readonly stored: (narInfo: NarInfo) => void;
      readonly present: (paths: StorePath[]) => void;
    };

async function runPush(
  options: Omit<PushOptions, "key">,
  committer: Committer,
): Promise<PushSummary> {
  const started = performance.now();
  const { store, compression } = options;
  const emit = options.onEvent ?? (() => {});
  const jobs = Math.max(1, options.jobs ?? availableParallelism());
  // Serialising, hashing and zstd run on one worker thread per job (nar-pool.ts), started
  // once there is work for them: a push of nothing new (the common small push) pays no
  // thread's boot, and a push of a few megabytes does the work inline instead.
  let pool: NarWriter | undefined;
  let staging: string | undefined;
  const commits: Promise<void>[] = [];
  const gates = new Map<StorePath, Gate>();
  const writes: Promise<void>[] = [];
  let done = false;
  let lease: CacheLease | undefined;
  try {
    const closure = referencesFirst(await queryClosure(options.roots, options.nix));
    options.onClosure?.(closure);
    emit({ type: "closure", paths: closure.length, narBytes: sum(closure.map((p) => p.narSize)) });
    let createdCache = false;
    if (options.createCache === true && committer.kind === "sign") {
      createdCache = await ensureCacheInfo(store);
    } else await requireCacheInfo(store);
    if (options.lease !== undefined) {
      lease = await CacheLease.take(store, "push", {
        ...(options.signal ? { signal: options.signal } : {}),
        ...options.lease,
      });
    }

    const present = await mapLimit(
      closure,
      16,
      async (p) => (await store.head(narInfoKey(p.path))) !== undefined,
    );
    const todo = closure.filter((_, i) => !present[i]);
    const already = closure.filter((_, i) => present[i]);
    if (committer.kind === "nars-only") committer.present(already.map((p) => p.path));
    const resigned =
      options.resign && committer.kind === "sign"
        ? (await resignPresent(store, already, committer.key)).resigned
        : [];
    const narBytes = sum(todo.map((p) => p.narSize));
    emit({ type: "plan", toPush: todo.length, present: closure.length - todo.length, narBytes });

    // The workers write their NAR files in the store's staging directory; they are moved
    // (or uploaded) from there. The directory first: a store readies itself for the batch
    // there (a directory store starts its syncer, cheapest before the threads are up).
    if (isFramed(compression) && todo.length > 0) {
      staging = await store.makeStagingDir();
      pool =
        narBytes <= (options.inlineNarBytes ?? INLINE_NAR_BYTES)
          ? new InlineNarWriter()
          : new NarPool(Math.min(jobs, todo.length));
    }
    const workers = pool && staging ? { pool, staging } : undefined;
    // One gate per path, opened once its narinfo is committed: a narinfo goes in only after
    // its NAR is stored and after the narinfos of its references, so a cache interrupted
    // mid-push holds only whole closures. A store that defers (a directory) publishes at its
    // flushes, durably and in the order the puts were called: there a narinfo is committed
    // when its put is called, and the next may follow at once. Elsewhere (S3) a put is
    // published when it completes, and only then is the narinfo committed.
    const ordered = store.flush !== undefined;
    for (const p of todo) gates.set(p.path, gate());
    // Serialising and compressing hold a job slot; storing (disk or network) runs behind it,
    // with a bounded number of NARs waiting to be stored.
    const storing = new Semaphore(jobs * 2);
    const flush = store.flush?.bind(store);
    const batches = flush && todo.length > 0 ? new FlushBatches(flush, narBytes) : undefined;
    let fileBytes = 0;
    // Largest first, so that no large path is left to one core at the end while the others
    // idle; the gates keep the commits in reference order whatever the order of the work.
    const largestFirst = [...todo].sort((a, b) => b.narSize - a.narSize);
    await mapLimit(largestFirst, jobs, async (info) => {
      const own = gates.get(info.path) as Gate;
      try {
        if (options.signal?.aborted) {
          throw new InterruptedError(
            `push: ${String(options.signal.reason ?? "interrupted")}; what was pushed before is kept`,
          );
        }
        const release = await storing.acquire();
        const { narInfo, stored } = await produceNar(info, options, emit, workers).catch((err) => {
          release();
          throw err;
        });
        stored.then(() => {
          release();
          batches?.stored(info.narSize);
        }, release);
        writes.push(stored);
        fileBytes += narInfo.fileSize ?? 0;
        const refs = info.references.filter((r) => r !== info.path && gates.has(r));
        const commit = Promise.all([stored, ...refs.map((r) => gates.get(r)?.promise)]).then(
          async () => {
            if (committer.kind === "nars-only") {
              // Stored and (for a store that defers) put before the final flush: the NAR is
              // the build host's part; its narinfo is the deployer's.
              committer.stored(narInfo);
              own.open();
              emit({
                type: "path-pushed",
                path: info.path,
                narSize: info.narSize,
                fileSize: narInfo.fileSize ?? 0,
              });
              return;
            }
            const signed = signNarInfo(narInfo, committer.key);
            // Deferred like its NAR: a flush publishes both, the NAR first (its put was called
            // first), once the contents of both are durable (flush-batch.ts).
            const put = store.put(narInfoKey(info.path), Buffer.from(formatNarInfo(signed)), {
              contentType: "text/x-nix-narinfo",
              durability: "deferred",
            });
            if (ordered) own.open();
            await put;
            emit({
              type: "path-pushed",
              path: info.path,
              narSize: info.narSize,
              fileSize: narInfo.fileSize ?? 0,
            });
          },
        );
        commit.then(own.open, own.fail);
        commits.push(commit);
      } catch (err) {
        own.fail(err);
        throw err;
      }
    });
    await Promise.all(commits);
    // The last NARs and narinfos, published.
    await (batches?.finish() ?? store.flush?.());
    done = true;
    if (lease !== undefined) {
      await confirmFoundAfterLapse(
        lease,
        store,
        already.map((p) => p.path),
        "push",
      );
    }

    const seconds = (performance.now() - started) / 1000;
    return {
      paths: closure.length,
      pushed: todo.length,
      alreadyPresent: closure.length - todo.length,
      resigned: resigned.length,
      narBytes,
      fileBytes,
      seconds,
      narMBps: seconds > 0 ? narBytes / 1e6 / seconds : 0,
      compression,
      pushedPaths: todo.map((p) => p.path),
      ...(createdCache ? { createdCache: true as const } : {}),
    };
  } finally {
    // Whatever happens, nothing is still writing to the cache once push returns.
    // A path never started (the push failed or was interrupted first) never opens its gate:
    // fail them all (opened ones stay open), so that no commit waits for one forever.
    const notPushed = new OperationError("push-stopped", "the push stopped before this path");
    for (const g of gates.values()) g.fail(notPushed);
    await Promise.allSettled([...writes, ...commits]);
    if (!done) {
      // A failed or interrupted push still publishes what it put (each narinfo after its NAR
      // and its references' narinfos; a failed put stops the publishing there): finished
      // work is kept. The push's own error is the one reported; should this flush fail too,
      // its objects stay in hidden temp files.
      await store.flush?.().catch(() => undefined);
    }
    await pool?.close();
    if (staging !== undefined) await rm(staging, { recursive: true, force: true });
    await lease?.release();
  }
}

/** Where the path's files are on disk: under the chroot when the Nix store is a directory. */
function physicalPath(path: StorePath, nix: NixOptions | undefined): string {
  return nix?.store?.startsWith("/") ? join(nix.store, path) : path;
}

interface ProducedNar {
  readonly narInfo: NarInfo;
  /** Settles when the NAR object is stored (with deferred durability: see the commit). */
  readonly stored: Promise<void>;
}

/** The formats the worker threads write, in FRAME_SIZE frames; the rest stream through a child. */
function isFramed(compression: Compression): compression is "zstd" | "none" {
  return compression === "zstd" || compression === "none";
}

/**
 * Serialises, checks and compresses one path into a held file: on a worker thread into the
 * store's staging directory (zstd and none), or through a compressing child process into a
 * spool (xz, bzip2). The NAR's object name depends on its hash, so the whole file is held
 * before it is stored, in the background.
 */
async function produceNar(
  info: PathInfo,
  options: Omit<PushOptions, "key">,
  emit: (e: PushEvent) => void,
  workers: { readonly pool: NarWriter; readonly staging: string } | undefined,
): Promise<ProducedNar> {
  const { store, compression } = options;
  const expected = { hash: info.narHash, size: info.narSize };
  const onBytes = (n: number): void => emit({ type: "bytes", narBytes: n });
  const source = physicalPath(info.path, options.nix);
  const describe = (fileHash: Sha256, fileSize: number): NarInfo => ({
    storePath: info.path,
    url: narKey(fileHash, compression),
    compression,
    fileHash,
    fileSize,
    narHash: info.narHash,
    narSize: info.narSize,
    references: info.references,
    deriver: info.deriver,
    sigs: [],
    ca: info.ca,
  });
  const put = { contentType: NAR_TYPE, durability: "deferred" } as const;

  if (isFramed(compression)) {
    if (workers === undefined) throw new Error(`push: ${compression} needs the worker pool`);
    const file = join(
      workers.staging,
      `${basename(info.path)}.nar${compression === "zstd" ? ".zst" : ""}`,
    );
    const level = compression === "zstd" ? (options.level ?? DEFAULT_LEVEL.zstd) : undefined;
    const out = await workers.pool.write(
      { path: source, out: file, level, label: info.path },
      onBytes,
    );
    const dispose = () => rm(file, { force: true });
    try {
      checkNar(info.path, out.nar, expected);
    } catch (err) {
      await dispose();
      throw err;
    }
    const narInfo = describe(out.file.hash, out.file.size);
    // putFile consumes the file, whatever the outcome: nothing is left to dispose of.
    // Its FileHash is the upload's payload hash: S3 need not hash the file again to sign it.
    const upload = () => store.putFile(narInfo.url, file, { ...put, sha256: out.file.hash.hex });
    return { narInfo, stored: storeNar(upload) };
  }

  const spool = new Spool(SPOOL_MEMORY);
  try {
    const { file } = await writeNar(source, spool, {
      compression,
      expected,
      label: info.path,
      onBytes,
      ...(options.level !== undefined ? { level: options.level } : {}),
    });
    const narInfo = describe(file.hash, file.size);
    const upload = () => store.put(narInfo.url, spool.contents(), { ...put, size: file.size });
    return { narInfo, stored: storeNar(upload, () => spool.dispose()) };
  } catch (err) {
    await spool.dispose();
    throw err;
  }
}

/**
 * Stores a held NAR with `put`, then disposes of what held it, if anything. No HEAD first: a new path's
 * NAR is almost never there already, and its name is its hash, so storing it again changes
 * nothing; the request saved is one of the three a new path costs (narinfo check, NAR,
 * narinfo). Runs in the background: the promise is marked handled here and awaited by the
 * commit.
 */
function storeNar(put: () => Promise<unknown>, dispose?: () => Promise<void>): Promise<void> {
  const stored = (async () => {
    try {
      await put();
    } finally {
      await dispose?.();
    }
  })();
  // Its failure reaches the caller, who awaits it; this only keeps it from counting as
  // unhandled while it waits behind other work.
  stored.catch(() => {});
  return stored;
}

interface Gate {
  readonly promise: Promise<void>;
  readonly open: () => void;
  readonly fail: (err: unknown) => void;
}

function gate(): Gate {
  let open = (): void => {};
  let fail = (_err: unknown): void => {};
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  // A failed gate is awaited by the commits behind it (and its path's own error is reported);
  // a gate nobody waits on must not count as an unhandled rejection.
  promise.catch(() => {});
  return { promise, open, fail };
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
