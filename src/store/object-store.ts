// The ObjectStore seam: the few operations the cache, releases and status need from a bucket.
// Adapters (fs, s3) implement it; everything above this layer sees only this interface.
import type { Readable } from "node:stream";

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /** Opaque version tag; changes whenever the object's content is replaced. */
  readonly etag: string;
  readonly lastModified: Date;
}

export interface GetResult {
  readonly status: "found";
  readonly info: ObjectInfo;
  /** The content as a stream; the caller must consume or destroy it. */
  readonly body: Readable;
}

export interface GetOptions {
  /**
   * An etag this store returned earlier (from get, head, put or list): when the object still
   * has it, get answers not-modified instead of sending the body again.
   */
  readonly ifNoneMatch?: string;
}

/** The object still has the etag the caller named in `ifNoneMatch`; no body was sent. */
export interface NotModified {
  readonly status: "not-modified";
}

/** Conditional put: write only if the key is absent, or only if its current etag matches. */
export type PutCondition = { readonly ifAbsent: true } | { readonly ifMatch: string };

export interface PutOptions {
  readonly contentType?: string;
  /** Byte length, when known up front (lets adapters avoid buffering). */
  readonly size?: number;
  readonly condition?: PutCondition;
  /**
   * "deferred": the store may publish the object later, at the next `flush()`, which makes it
   * visible and durable together with every other deferred object (group commit): all their
   * contents durable first, then visible one by one in the order their puts were CALLED, so
   * a caller may call a put that depends on another as soon as it has called that one. Not
   * with `condition`. A store without `flush` ignores it: its writes are visible and durable
   * once acknowledged, so there a dependent put must wait for the other's to complete.
   */
  readonly durability?: "deferred";
  /**
   * The body's SHA-256 as 64 lowercase hex digits, when the caller already has it (push has
   * the NAR file's FileHash). A store that signs its payload (S3, SigV4) sends it as the
   * signed payload hash of a body it sends in one request, instead of hashing the body again,
   * and S3 refuses a body that does not match it; other stores (and multipart parts, each
   * signed with its own hash) do without it.
   */
  readonly sha256?: string;
}

/** Expected outcomes are data: a failed precondition is not an exception. */
export type PutResult =
  | { readonly status: "written"; readonly etag: string }
  | { readonly status: "precondition-failed" };

export interface ListOptions {
  /** Continue after this opaque token from a previous page. */
  readonly token?: string;
  /**
   * Start after this key (S3's StartAfter): only keys that sort after it are listed, whether or
   * not it exists. Ignored when `token` is given.
   */
  readonly startAfter?: string;
  /** At most this many objects in the page (adapters may cap it; default 1000). */
  readonly limit?: number;
}

export interface ListPage {
  /** Objects whose key starts with the prefix, in ascending byte order of key. */
  readonly objects: readonly ObjectInfo[];
  /** Present when more objects follow. */
  readonly nextToken?: string;
}

/** The most keys one `deleteMany` takes (S3's DeleteObjects limit). */
export const DELETE_BATCH = 1000;

export interface DeleteManyResult {
  readonly failed: readonly { readonly key: string; readonly message: string }[];
}

/** What a request to a store's server did, as counted by `requestStats`. */
export const REQUEST_KINDS = [
  "head",
  "get",
  "put",
  "list",
  "delete",
  "multipart-create",
  "multipart-part",
  "multipart-complete",
  "multipart-abort",
  "other",
] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

export interface RequestStats {
  /** Requests sent, by kind; every attempt counts, retries included. */
  readonly requests: Readonly<Record<RequestKind, number>>;
  /** How many of those requests were retries of one that failed (throttled, 500/502/503/504, no answer). */
  readonly retries: number;
}

/** Objects and their bytes. */
export interface Tally {
  objects: number;
  bytes: number;
}

/** Leftovers a sweep names (it counts them all). */
export const LEFTOVERS_NAMED = 100;

export interface LeftoverOptions {
  /** Leftovers untouched since this time (ms since the epoch) are removed; younger ones counted. */
  readonly before: number;
  readonly dryRun: boolean;
  readonly signal?: AbortSignal;
}

export interface LeftoversRemoved {
  /** Removed (in a dry run, that would be). */
  readonly removed: Tally;
  /** Touched since `before`: a writer's at work, or one that died since. */
  readonly young: Tally;
  /** Where the first LEFTOVERS_NAMED removed (in a dry run, that would be) were, from the store's root. */
  readonly paths: readonly string[];
  readonly problems: readonly string[];
}

export interface ObjectStore {
  /** The URL the store was opened from, without credentials. */
  readonly url: string;
  /** The object, or undefined when absent. */
  get(key: string): Promise<GetResult | undefined>;
  /**
   * A conditional get: also answers not-modified when `ifNoneMatch` is the object's etag. The
   * wider result type makes callers that ask the question handle that answer.
   */
  get(key: string, options?: GetOptions): Promise<GetResult | NotModified | undefined>;
  head(key: string): Promise<ObjectInfo | undefined>;
  put(key: string, body: Readable | Uint8Array, options?: PutOptions): Promise<PutResult>;
  /**
   * Stores the local file `file` under `key`, consuming the file: a directory store on the
   * same file system moves it into place, any other store uploads it. The file is no longer
   * the caller's once the call settles, whatever the outcome (a deferred one is moved into
   * place at the next flush).
   */
  putFile(key: string, file: string, options?: Omit<PutOptions, "size">): Promise<PutResult>;
  /**
   * Creates an empty local directory to prepare files for putFile in, where moving them into
   * the store is cheapest. The caller removes it when done. A store with `flush` may ready
   * itself here for the batch to come, so call it before starting threads.
   */
  makeStagingDir(): Promise<string>;
  list(prefix: string, options?: ListOptions): Promise<ListPage>;
  /** Deleting an absent key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Optional (stores with a batch delete: S3's DeleteObjects): deletes up to DELETE_BATCH keys
   * in one request. Keys that could not be deleted are returned with why; absent keys are not
   * failures. Callers use `deleteKeys` (helpers.ts), which falls back to `delete` per key.
   */
  deleteMany?(keys: readonly string[]): Promise<DeleteManyResult>;
  /**
   * Optional (stores reachable by URL with signed requests: S3): a URL that lets whoever holds
   * it GET the object, and nothing else, for `seconds`.
   */
  presignGet?(key: string, seconds: number): Promise<string>;
  /**
   * Optional (stores whose writers leave files of their own beside the objects: a directory):
   * removes the temp files, lock files and staging directories of writers that died, those
   * untouched since `options.before`; with `dryRun`, only counts them. An interrupt (`signal`)
   * ends it early, with what was removed by then counted. (An S3 bucket's
   * uploads left incomplete are its lifecycle rule's: terraform/modules/cache aborts them.)
   */
  removeLeftovers?(options: LeftoverOptions): Promise<LeftoversRemoved>;
  /** Optional (stores that send requests to a server: S3): what was sent since it was opened. */
  requestStats?(): RequestStats;
  /**
   * Optional (stores whose writes can be deferred: a directory): publishes, durably, every
   * object whose put with `durability: "deferred"` was called before it (waiting for those
   * puts to end), in call order. A failed deferred put stops the publishing there, since what
   * was put after it may depend on it: those objects are dropped and the flush fails.
   * Callers that arrive while a flush runs share the next one.
   */
  flush?(): Promise<void>;
  /** Releases connections and other resources. Deferred puts not flushed by then are dropped. */
  close(): Promise<void>;
}
