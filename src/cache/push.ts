// Push a closure into a binary cache: serialise each NAR from the store, check it against the
// NarHash Nix recorded, compress and hash in one pass, upload the NAR, then commit the signed
// narinfo, only once the path's references are committed, so the cache is never inconsistent.
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { OperationError } from "../errors.js";
import { type PathInfo, referencesFirst } from "../nix/closure.js";
import type { SecretKey } from "../nix/keys.js";
import { dumpPathStream } from "../nix/nar-encode.js";
import { type Compression, formatNarInfo, type NarInfo, signNarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { ensureCacheInfo } from "./cache-info.js";
import { compressor } from "./compression.js";
import { HashingStream } from "./hashing.js";
import { narInfoKey, narKey } from "./layout.js";
import { type NixOptions, queryClosure } from "./local-nix.js";
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
  readonly nix?: NixOptions;
  readonly onEvent?: (event: PushEvent) => void;
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

export interface PushSummary {
  readonly paths: number;
  readonly pushed: number;
  readonly alreadyPresent: number;
  readonly narBytes: number;
  readonly fileBytes: number;
  readonly seconds: number;
  /** NAR megabytes (10^6) per second over the whole push. */
  readonly narMBps: number;
  readonly compression: Compression;
  readonly pushedPaths: readonly StorePath[];
}

/** Memory each in-flight path may use to hold its compressed NAR before spilling to disk. */
const SPOOL_MEMORY = 8 << 20;
/** NARs at least this large get a multi-threaded compressor of their own. */
const BIG_NAR = 32 << 20;

export async function pushClosure(options: PushOptions): Promise<PushSummary> {
  const started = performance.now();
  const { store, compression } = options;
  const emit = options.onEvent ?? (() => {});
  const jobs = Math.max(1, options.jobs ?? availableParallelism());

  const closure = referencesFirst(await queryClosure(options.roots, options.nix));
  emit({ type: "closure", paths: closure.length, narBytes: sum(closure.map((p) => p.narSize)) });
  await ensureCacheInfo(store);

  const present = await mapLimit(
    closure,
    16,
    async (p) => (await store.head(narInfoKey(p.path))) !== undefined,
  );
  const todo = closure.filter((_, i) => !present[i]);
  const narBytes = sum(todo.map((p) => p.narSize));
  emit({ type: "plan", toPush: todo.length, present: closure.length - todo.length, narBytes });

  // One gate per path, opened when its narinfo is committed: a narinfo goes in only after
  // the narinfos of its references, so a cache interrupted mid-push holds only whole closures.
  const gates = new Map(todo.map((p) => [p.path, gate()]));
  let fileBytes = 0;
  const threads = availableParallelism();
  const commits: Promise<void>[] = [];
  await mapLimit(todo, jobs, async (info) => {
    const own = gates.get(info.path) as Gate;
    try {
      const uploaded = await uploadNar(info, options, info.narSize >= BIG_NAR ? threads : 1, emit);
      fileBytes += uploaded.fileSize ?? 0;
      const refs = info.references.filter((r) => r !== info.path && gates.has(r));
      const commit = Promise.all(refs.map((r) => gates.get(r)?.promise)).then(async () => {
        const signed = signNarInfo(uploaded, options.key);
        await store.put(narInfoKey(info.path), Buffer.from(formatNarInfo(signed)), {
          contentType: "text/x-nix-narinfo",
        });
        emit({
          type: "path-pushed",
          path: info.path,
          narSize: info.narSize,
          fileSize: uploaded.fileSize ?? 0,
        });
      });
      commit.then(own.open, own.fail);
      commits.push(commit);
    } catch (err) {
      own.fail(err);
      throw err;
    }
  });
  await Promise.all(commits);

  const seconds = (performance.now() - started) / 1000;
  return {
    paths: closure.length,
    pushed: todo.length,
    alreadyPresent: closure.length - todo.length,
    narBytes,
    fileBytes,
    seconds,
    narMBps: seconds > 0 ? narBytes / 1e6 / seconds : 0,
    compression,
    pushedPaths: todo.map((p) => p.path),
  };
}

/** Where the path's files are on disk: under the chroot when the Nix store is a directory. */
function physicalPath(path: StorePath, nix: NixOptions | undefined): string {
  return nix?.store?.startsWith("/") ? join(nix.store, path) : path;
}

async function uploadNar(
  info: PathInfo,
  options: PushOptions,
  threads: number,
  emit: (e: PushEvent) => void,
): Promise<NarInfo> {
  const narHasher = new HashingStream((n) => emit({ type: "bytes", narBytes: n }));
  const fileHasher = new HashingStream();
  const spool = new Spool(SPOOL_MEMORY);
  try {
    await pipeline(
      dumpPathStream(physicalPath(info.path, options.nix)),
      narHasher,
      compressor(options.compression, {
        ...(options.level ? { level: options.level } : {}),
        threads,
      }),
      fileHasher,
      spool,
    );
    const nar = narHasher.digest();
    if (!nar.hash.equals(info.narHash) || nar.size !== info.narSize) {
      throw new OperationError(
        "nar-hash-mismatch",
        `${info.path}: the NAR read from disk (${nar.hash}, ${nar.size} bytes) differs from what Nix recorded (${info.narHash}, ${info.narSize} bytes)`,
        {
          hint: `the store path may be corrupted; check it with 'nix-store --verify-path ${info.path}'`,
        },
      );
    }
    const file = fileHasher.digest();
    const key = narKey(file.hash, options.compression);
    const existing = await options.store.head(key);
    if (existing?.size !== file.size) {
      await options.store.put(key, spool.contents(), {
        size: file.size,
        contentType: "application/x-nix-nar",
      });
    }
    return {
      storePath: info.path,
      url: key,
      compression: options.compression,
      fileHash: file.hash,
      fileSize: file.size,
      narHash: info.narHash,
      narSize: info.narSize,
      references: info.references,
      deriver: info.deriver,
      sigs: [],
      ca: info.ca,
    };
  } finally {
    await spool.dispose();
  }
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
  promise.catch(() => {});
  return { promise, open, fail };
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
