// FsStore: an ObjectStore in a local directory, the embedded default. Every write goes to a temp
// file beside its target and is then renamed (or linked) into place, so readers never see a part.
// Why one long file: it is the one class behind the ObjectStore seam for a directory, whose
// verbs share its root, its confinement to it and its batch of deferred syncs; the file steps
// themselves (temp files, sealing, errors) are fs-files.ts's.
import { randomBytes } from "node:crypto";
import { type BigIntStats, constants, createReadStream } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { link, lstat, open, realpath, rename, rm, rmdir, stat, unlink } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import type { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { InputError, NixshipError, OperationError } from "../errors.js";
import { makeDirs } from "../util/make-dirs.js";
import { DirectorySyncs } from "./dir-sync.js";
import { DirCache, type DirReads, dirKeyOf } from "./fs-dir-cache.js";
import {
  createTemp,
  errnoOf,
  failed,
  fsFault,
  inDirectory,
  removeQuietly,
  sealFile,
  succeeded,
  tempBeside,
  toInfo,
  writeAll,
} from "./fs-files.js";
import { removeLeftovers } from "./fs-leftovers.js";
import { withLock } from "./fs-lock.js";
import { newStagingDir, STAGING_HOME } from "./fs-staging.js";
import { FileSystemSyncer } from "./fs-syncer.js";
import { isAbsent, walkKeys } from "./fs-walk.js";
import { pageLimit, validateKey, validatePrefix } from "./keys.js";
import type {
  GetOptions,
  GetResult,
  LeftoverOptions,
  LeftoversRemoved,
  ListOptions,
  ListPage,
  NotModified,
  ObjectInfo,
  ObjectStore,
  PutOptions,
  PutResult,
} from "./object-store.js";

export interface FsStoreOptions {
  /** fsync each object and its directory before reporting it written (default true). */
  readonly fsync?: boolean;
  /** The longest run of a large directory's children listings keep (default CACHED_HEAD). */
  readonly listRun?: number;
}

const FAILED: PutResult = { status: "precondition-failed" };

/**
 * A deferred object, from the call of its put: where it goes at the next flush, and, once its
 * put has succeeded, the sealed file to move there. `settled` resolves when the put has
 * ended, either way.
 */
interface Pending {
  readonly key: string;
  readonly path: string;
  from?: string;
  readonly settled: Promise<void>;
  readonly settle: () => void;
}

export class FsStore implements ObjectStore {
  readonly url: string;
  readonly #root: string;
  readonly #fsync: boolean;
  #rootDevice: Promise<bigint> | undefined;
  readonly #dirSyncs = new DirectorySyncs();
  /** syncfs of the root's file system, for flushes; started with the first staging dir. */
  readonly #syncer: FileSystemSyncer;
  readonly #fileSystemSyncs = new DirectorySyncs(() => this.#syncer.sync());
  /** Deferred objects not yet published, in the order their puts were called. */
  #pending: Pending[] = [];
  /** Why a flush failed: every later flush publishes nothing (what it holds may depend on it). */
  #flushFailed: string | undefined;
  /** Whether this store made a staging directory (close() then tidies their home). */
  #staged = false;
  /**
   * Where deferred puts write their bodies until a flush moves them into place: a staging
   * directory of this store's own, made at the first such put, so a push killed between two
   * flushes leaves its unpublished objects there (removed once stale) and none beside the
   * objects they would have become.
   */
  #deferredDir: Promise<string> | undefined;
  /** The renames of the flushes so far, one flush after another, each in put order. */
  #publishing: Promise<void> = Promise.resolve();
  /** Large directories' sorted children, for listings (fs-dir-cache.ts). */
  readonly #dirs: DirCache;

  constructor(root: string, options: FsStoreOptions = {}) {
    if (!isAbsolute(root)) {
      throw new InputError(
        "bad-store-url",
        `fs store root must be an absolute path, got "${root}"`,
      );
    }
    this.#root = resolve(root);
    this.#dirs = new DirCache(this.#root, options.listRun);
    this.url = pathToFileURL(this.#root).href;
    this.#fsync = options.fsync ?? true;
    this.#syncer = new FileSystemSyncer(this.#root);
  }

  get(key: string): Promise<GetResult | undefined>;
  get(key: string, options?: GetOptions): Promise<GetResult | NotModified | undefined>;
  async get(key: string, options: GetOptions = {}): Promise<GetResult | NotModified | undefined> {
    const path = this.#path(key);
    let handle: FileHandle;
    try {
      // Never through a link: the object itself (O_NOFOLLOW), and no directory on its way
      // that leads out of the root. Never waiting either (O_NONBLOCK): a FIFO someone put
      // there would block the open until a writer came (it is no object: see below).
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if (isAbsent(err)) return undefined;
      if ((err as NodeJS.ErrnoException).code === "ELOOP") throw this.#linked(key);
      throw fsFault(this.url, this.#root, "read", key, err);
    }
    // A delete that removed the object (and its emptied directory) since it was opened leaves
    // nothing to check: the object is absent, as it would be to a get a moment later.
    let inside: boolean;
    try {
      inside = await this.#inside(key, path, undefined);
    } catch (err) {
      await handle.close();
      throw err;
    }
    if (!inside) {
      await handle.close();
      return undefined;
    }
    // Stat the open handle, not the path, so the info describes exactly the bytes we stream.
    const st = await handle.stat({ bigint: true }).catch(async (err: unknown) => {
      await handle.close();
      throw fsFault(this.url, this.#root, "read", key, err);
    });
    if (!st.isFile()) {
      await handle.close();
      return undefined;
    }
    const info = toInfo(key, st);
    if (options.ifNoneMatch !== undefined && options.ifNoneMatch === info.etag) {
      await handle.close();
      return { status: "not-modified" };
    }
    return { status: "found", info, body: handle.createReadStream() };
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.#head(key, undefined);
  }

  /**
   * `head`; `checked` (one list call's) holds each directory's check that it lies inside the
   * root, so that a page of 1,000 keys in one directory resolves that directory once.
   */
  async #head(
    key: string,
    checked: Map<string, Promise<void>> | undefined,
  ): Promise<ObjectInfo | undefined> {
    const path = this.#path(key);
    let st: BigIntStats;
    try {
      st = await lstat(path, { bigint: true });
    } catch (err) {
      if (isAbsent(err)) return undefined;
      throw fsFault(this.url, this.#root, "read", key, err);
    }
    if (st.isSymbolicLink()) throw this.#linked(key);
    if (!(await this.#inside(key, path, checked))) return undefined;
    return st.isFile() ? toInfo(key, st) : undefined;
  }

  /**
   * Whether the directory of `key` (at `path`) lies inside the root, links resolved; false when
   * it is gone (a delete tidies empty parents). `checked` as in `#head`.
   */
  async #inside(
    key: string,
    path: string,
    checked: Map<string, Promise<void>> | undefined,
  ): Promise<boolean> {
    let check = checked?.get(dirname(path));
    if (check === undefined) {
      check = this.#checkInside(key, path);
      checked?.set(dirname(path), check);
    }
    try {
      await check;
      return true;
    } catch (err) {
      if (isAbsent(err)) return false;
      throw err;
    }
  }

  async put(
    key: string,
    body: Readable | Uint8Array,
    options: PutOptions = {},
  ): Promise<PutResult> {
    const path = this.#path(key);
    // Reserved now, before the first await, so that flushes publish in the order of calls.
    const slot = this.#reserve(key, path, options);
    return this.#settling(slot, this.#putBody(key, path, body, options, slot));
  }

  async putFile(
    key: string,
    file: string,
    options: Omit<PutOptions, "size"> = {},
  ): Promise<PutResult> {
    const path = this.#path(key);
    const slot = this.#reserve(key, path, options);
    return this.#settling(slot, this.#putFile(key, path, file, options, slot));
  }

  async #putBody(
    key: string,
    path: string,
    body: Readable | Uint8Array,
    options: PutOptions,
    slot: Pending | undefined,
  ): Promise<PutResult> {
    let tmp: string | undefined;
    let consumed = false;
    try {
      if (slot === undefined) await this.#writableDir(key, path);
      tmp = slot === undefined ? tempBeside(path) : await this.#deferredTemp();
      const handle = await createTemp(tmp);
      let etag: string;
      try {
        await writeAll(handle, key, body, options.size);
        etag = toInfo(key, await sealFile(handle, this.#syncs(options))).etag;
      } finally {
        await handle.close();
      }
      const placed = await this.#place(key, path, tmp, etag, options, slot);
      consumed = placed.consumed;
      return placed.result;
    } catch (err) {
      throw fsFault(this.url, this.#root, "write", key, err);
    } finally {
      if (!consumed && tmp !== undefined) await removeQuietly(tmp);
    }
  }

  /** A new temp file's name in the deferred puts' staging directory. */
  async #deferredTemp(): Promise<string> {
    this.#deferredDir ??= this.makeStagingDir();
    const dir = await this.#deferredDir.catch((err: unknown) => {
      this.#deferredDir = undefined; // the next put tries again
      throw err;
    });
    return join(dir, `put-${randomBytes(6).toString("hex")}`);
  }

  async #putFile(
    key: string,
    path: string,
    file: string,
    options: Omit<PutOptions, "size">,
    slot: Pending | undefined,
  ): Promise<PutResult> {
    let consumed = false;
    try {
      const [sealed, device] = await Promise.all([
        sealFile(file, this.#syncs(options)),
        this.#device(),
      ]);
      if (sealed.dev !== device) {
        // On another file system it cannot be moved in: copy it, as a put of its bytes.
        return await this.#putBody(key, path, createReadStream(file), options, slot);
      }
      const etag = toInfo(key, sealed).etag;
      const placed = await this.#place(key, path, file, etag, options, slot).catch(
        (err: unknown) => {
          // The same file system under another mount (a bind mount): Linux moves nothing
          // between mounts. Copy it, as a put of its bytes.
          if (errnoOf(err) !== "EXDEV" || slot !== undefined) throw err;
          return undefined;
        },
      );
      if (placed === undefined) {
        return await this.#putBody(key, path, createReadStream(file), options, slot);
      }
      consumed = placed.consumed;
      return placed.result;
    } catch (err) {
      throw fsFault(this.url, this.#root, "write", key, err);
    } finally {
      if (!consumed) await removeQuietly(file);
    }
  }

  /** A deferred put's place in the publishing order (none for other puts). */
  #reserve(key: string, path: string, options: Omit<PutOptions, "size">): Pending | undefined {
    if (options.durability !== "deferred") return undefined;
    if (options.condition !== undefined) {
      throw new Error(`a put of "${key}" both conditional and deferred: no store can do that`);
    }
    let settle = (): void => {};
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const slot: Pending = { key, path, settled, settle };
    this.#pending.push(slot);
    return slot;
  }

  /** Settles `slot` when `put` ends: filled by #place on success, left empty on failure. */
  async #settling(slot: Pending | undefined, put: Promise<PutResult>): Promise<PutResult> {
    try {
      return await put;
    } finally {
      slot?.settle();
    }
  }

  removeLeftovers(options: LeftoverOptions): Promise<LeftoversRemoved> {
    return removeLeftovers(this.#root, options);
  }

  async makeStagingDir(): Promise<string> {
    // Staged files come in batches that end with a flush: start its syncer now, before the
    // caller's threads and buffers make this process dear to fork (fs-syncer.ts).
    if (this.#fsync) this.#syncer.start();
    this.#staged = true;
    const dir = await newStagingDir(this.#root, this.url);
    await this.#writableDir(STAGING_HOME, join(dir, "put"));
    return dir;
  }

  /**
   * Makes the sealed file `from` (in this store's file system) the object at `path`, honouring
   * the condition: renamed into place, or linked when the key must be absent. `consumed` says
   * whether `from` is gone.
   */
  async #place(
    key: string,
    path: string,
    from: string,
    etag: string,
    options: Omit<PutOptions, "size">,
    slot: Pending | undefined,
  ): Promise<{ result: PutResult; consumed: boolean }> {
    const { condition } = options;
    const sync = this.#syncs(options);
    const dir = dirname(path);
    if (slot !== undefined) {
      slot.from = from;
      return { result: { status: "written", etag }, consumed: true };
    }
    await this.#writableDir(key, path);
    if (condition === undefined) {
      await inDirectory(path, () => rename(from, path));
    } else if ("ifAbsent" in condition) {
      // link(2) fails with EEXIST when the target exists: atomic across processes.
      const linked = await inDirectory(path, () =>
        link(from, path).then(succeeded, (err: unknown) =>
          errnoOf(err) === "EEXIST" ? false : Promise.reject(err),
        ),
      );
      if (!linked) return { result: FAILED, consumed: false };
      if (sync) await this.#dirSyncs.sync(dir);
      return { result: { status: "written", etag }, consumed: false };
    } else {
      await makeDirs(dir);
      const swapped = await withLock(join(dir, `.${basename(path)}.nixship-lock`), async () => {
        if ((await this.head(key))?.etag !== condition.ifMatch) return false;
        await rename(from, path);
        return true;
      });
      if (!swapped) return { result: FAILED, consumed: false };
    }
    if (sync) await this.#dirSyncs.sync(dir);
    return { result: { status: "written", etag }, consumed: true };
  }

  /**
   * Publishes, durably and in the order their puts were called, the objects whose deferred
   * puts were called before the flush: it waits for those puts to end, makes every one's
   * contents durable with one syncfs(2) of the root's file system (fs-syncer.ts), shared by
   * the callers that arrive while one runs, then renames them into place one by one, one
   * flush after another, and fsyncs their directories. The kernel's flusher threads write the
   * pages back, not this process, and one flush serves a whole batch. Without fsync
   * (`?fsync=false`) only the renames are left to do.
   *
   * A deferred put that failed stops the publishing there: the objects put after it may
   * depend on it (a narinfo on the narinfos of its references), so they are removed, and the
   * flush fails. So does every later flush: a failed flush (a put, the sync, a rename) may
   * have dropped what the objects of the next depend on (a NAR its narinfo names).
   */
  async flush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    await Promise.all(batch.map((slot) => slot.settled));
    if (this.#flushFailed !== undefined && batch.length > 0) {
      await Promise.all(batch.map((slot) => slot.from && removeQuietly(slot.from)));
      throw new OperationError(
        "store-fs-failed",
        `did not publish ${batch.length} object(s) put in ${this.url} after an earlier flush failed (${this.#flushFailed}): they may depend on what it dropped`,
      );
    }
    try {
      await this.#flushBatch(batch);
    } catch (err) {
      this.#flushFailed = err instanceof Error ? err.message : String(err);
      throw err;
    }
  }

  async #flushBatch(batch: readonly Pending[]): Promise<void> {
    const failed = batch.findIndex((slot) => slot.from === undefined);
    const publish = failed < 0 ? batch : batch.slice(0, failed);
    const dropped = failed < 0 ? [] : batch.slice(failed + 1);
    try {
      if (this.#fsync && publish.length > 0) await this.#fileSystemSyncs.sync(this.#root);
      const published = this.#publishing.catch(() => undefined).then(() => this.#publish(publish));
      this.#publishing = published;
      await published;
    } catch (err) {
      if (err instanceof NixshipError) throw err;
      throw new OperationError(
        "store-fs-failed",
        `cannot flush ${this.url} to disk: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    } finally {
      await Promise.all(dropped.map((slot) => slot.from && removeQuietly(slot.from)));
    }
    if (failed >= 0) {
      throw new OperationError(
        "store-fs-failed",
        `did not publish ${dropped.length} object(s) put in ${this.url} after "${batch[failed]?.key}", whose put failed: they may depend on it`,
      );
    }
  }

  /** Renames a flushed batch into place, one by one in put order, then syncs the directories. */
  async #publish(batch: readonly Pending[]): Promise<void> {
    const checked = new Map<string, Promise<void>>();
    for (const { key, from, path } of batch) {
      if (from === undefined) continue;
      let check = checked.get(dirname(path));
      if (check === undefined) {
        check = this.#writableDir(key, path);
        checked.set(dirname(path), check);
      }
      await check;
      await inDirectory(path, () => rename(from, path));
    }
    if (!this.#fsync) return;
    await Promise.all(
      [...new Set(batch.map((p) => dirname(p.path)))].map((d) => this.#dirSyncs.sync(d)),
    );
  }

  /** Whether a put with `options` syncs its object itself before it is reported written. */
  #syncs(options: Pick<PutOptions, "durability">): boolean {
    return this.#fsync && options.durability !== "deferred";
  }

  /** The device number of the root's file system (the root is created if missing). */
  #device(): Promise<bigint> {
    this.#rootDevice ??= makeDirs(this.#root)
      .then(async () => (await stat(this.#root, { bigint: true })).dev)
      .catch((err: unknown) => {
        this.#rootDevice = undefined;
        throw err;
      });
    return this.#rootDevice;
  }

  /** Directories, and their entries, that listings read from the disk so far. */
  get listReads(): Readonly<DirReads> {
    return { ...this.#dirs.reads };
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    validatePrefix(prefix);
    const limit = pageLimit(options.limit);
    const cut = prefix.lastIndexOf("/") + 1;
    const keys: string[] = [];
    let more = false;
    try {
      const after = options.token ?? options.startAfter;
      const walk = walkKeys(this.#root, prefix.slice(0, cut), prefix.slice(cut), after, this.#dirs);
      walking: for await (const run of walk) {
        for (const key of run) {
          if (keys.length === limit) {
            more = true;
            break walking;
          }
          keys.push(key);
        }
      }
    } catch (err) {
      throw fsFault(this.url, this.#root, "list", prefix, err);
    }
    // A key deleted between the walk and the stat is simply left out of the page. A key of a
    // directory kept unchanged is as the listing showed it (its directory checked once).
    const checked = new Map<string, Promise<void>>();
    const infos: (ObjectInfo | undefined)[] = keys.map((key) => this.#dirs.object(key));
    const keptDirs = new Map<string, string>();
    for (const info of infos) if (info !== undefined) keptDirs.set(dirKeyOf(info.key), info.key);
    const gone = new Set<string>();
    await Promise.all([
      ...keys.map(async (key, i) => {
        if (infos[i] !== undefined) return;
        infos[i] = await this.#head(key, checked);
        if (infos[i] !== undefined) this.#dirs.keepObject(infos[i]);
      }),
      ...[...keptDirs].map(async ([dir, key]) => {
        if (!(await this.#inside(key, this.#path(key), checked))) gone.add(dir);
      }),
    ]);
    const objects = infos.filter(
      (info): info is ObjectInfo => info !== undefined && !gone.has(dirKeyOf(info.key)),
    );
    return more ? { objects, nextToken: keys[keys.length - 1] } : { objects };
  }

  async delete(key: string): Promise<void> {
    const path = this.#path(key);
    try {
      await this.#writableDir(key, path);
      await unlink(path);
    } catch (err) {
      if (isAbsent(err) || errnoOf(err) === "EISDIR") return;
      throw fsFault(this.url, this.#root, "delete", key, err);
    }
    // Tidy now-empty parents up to (never including) the root; a concurrent put re-creates
    // its directory if this removes it (see createTemp).
    let dir = dirname(path);
    while (dir !== this.#root && (await rmdir(dir).then(succeeded, failed))) dir = dirname(dir);
  }

  async close(): Promise<void> {
    this.#syncer.close();
    // Deferred puts not flushed by now are dropped with the directory that holds them.
    const deferred = await this.#deferredDir?.catch(() => undefined);
    this.#deferredDir = undefined;
    this.#pending = [];
    if (deferred !== undefined) await rm(deferred, { recursive: true, force: true });
    // The home of staging directories goes too once the last one is removed (rmdir fails,
    // harmlessly, while another process still stages in it).
    if (this.#staged) await rmdir(join(this.#root, STAGING_HOME)).catch(() => undefined);
  }

  /** The root with its links resolved, once. */
  #realRoot: Promise<string> | undefined;

  /** The root with its links resolved; undefined while it does not exist (asked again then). */
  async #rootReal(): Promise<string | undefined> {
    this.#realRoot ??= realpath(this.#root);
    const real = this.#realRoot;
    try {
      return await real;
    } catch (err) {
      if (this.#realRoot === real) this.#realRoot = undefined;
      if (isAbsent(err)) return undefined;
      throw err;
    }
  }

  /** Refuses an object whose directory, links resolved, is not inside the root. */
  async #checkInside(key: string, path: string): Promise<void> {
    this.#realRoot ??= realpath(this.#root);
    const [root, dir] = await Promise.all([this.#realRoot, realpath(dirname(path))]);
    if (dir !== root && !dir.startsWith(`${root}${sep}`)) throw this.#linked(key);
  }

  /**
   * Refuses to write or delete `key` (at `path`) when its directory, or the nearest of its
   * ancestors that exists, is reached through a link out of the root: a writer that can change
   * the store's directory (an agent host on a shared mount may write status/) must not turn a
   * put into a write elsewhere with this process's rights. (A link swapped in between this check
   * and the rename is not caught: Node has no openat(2) to write relative to a checked
   * directory. It narrows the window to that moment.)
   */
  async #writableDir(key: string, path: string): Promise<void> {
    const root = await this.#rootReal();
    // A root not made yet holds no link: the put makes it.
    if (root === undefined) return;
    let dir = dirname(path);
    for (;;) {
      try {
        const real = await realpath(dir);
        if (real !== root && !real.startsWith(`${root}${sep}`)) throw this.#linked(key);
        return;
      } catch (err) {
        if (!isAbsent(err)) throw err;
        // The root itself gone since (a store removed under a long-lived process): the put
        // makes it again, with nothing in it to lead out.
        if (dir === this.#root || dir === dirname(dir)) return;
        // Not made yet: its parent is where it will be made.
        dir = dirname(dir);
      }
    }
  }

  #linked(key: string): OperationError {
    return new OperationError(
      "store-link",
      `${key} in ${this.#root} is reached through a symbolic link; the store never follows links`,
      { hint: "replace the link with the object itself, inside the store's directory" },
    );
  }

  #path(key: string): string {
    validateKey(key);
    const path = join(this.#root, ...key.split("/"));
    // validateKey already rules out escapes; this guards the filesystem against a future slip.
    if (!path.startsWith(this.#root.endsWith(sep) ? this.#root : this.#root + sep)) {
      throw new InputError("bad-object-key", `object key "${key}" resolves outside ${this.url}`);
    }
    return path;
  }
}
