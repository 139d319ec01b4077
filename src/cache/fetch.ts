// Fetch a path with its closure from a cache: check every narinfo's signature, stream each NAR
// through hash checks, then import into the local Nix or restore into a directory. Nothing
// unverified is kept: an import stops before a bad path's metadata, a restore is staged.
import { randomBytes } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { InputError, OperationError } from "../errors.js";
import { referencesFirst } from "../nix/closure.js";
import { exportEnd, exportPathEnd, exportPathStart } from "../nix/export.js";
import type { PublicKey } from "../nix/keys.js";
import { requireRestorable, restoreNar } from "../nix/nar-restore.js";
import { checkNarInfoSignatures, type NarInfo } from "../nix/narinfo.js";
import { STORE_DIR, type StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { readDeadlineMs } from "../util/deadline.js";
import { writeDrained } from "../util/drained.js";
import { testWait } from "../util/test-waits.js";
import { walkClosure } from "./closure-walk.js";
import { importExport, type NixOptions, validPaths } from "./local-nix.js";
import { NarCheckError, streamVerifiedNar } from "./read.js";

export interface FetchSource {
  readonly store: ObjectStore;
  readonly trusted: readonly PublicKey[];
  readonly onEvent?: (event: FetchEvent) => void;
}

export type FetchEvent =
  | { readonly type: "closure"; readonly paths: number; readonly toFetch: number }
  | { readonly type: "path-fetched"; readonly path: StorePath; readonly narSize: number };

/** Reads the narinfos of `root`'s closure; every one must exist and carry a trusted signature. */
export async function resolveClosure(source: FetchSource, root: StorePath): Promise<NarInfo[]> {
  // A narinfo the cache holds that does not read (malformed, or past its size) is the cache's
  // fault, not the user's input: the fetch failed (exit 1), as for a NAR that is not its own.
  const walk = await walkClosure(source.store, [root]).catch((err: unknown) => {
    if (!(err instanceof InputError)) throw err;
    throw new OperationError("closure-rejected", `cannot fetch ${root}: ${err.message}`, {
      hint: "the cache holds something other than what nixship or Nix wrote there: push the closure again",
      cause: err,
    });
  });
  const problems = walk.missing.map((p) => `${p} is not in the cache ${source.store.url}`);
  for (const info of walk.found.values()) {
    const sig = checkNarInfoSignatures(info, source.trusted);
    if (!sig.ok) problems.push(...sig.problems.map((m) => `${info.storePath}: ${m}`));
  }
  if (problems.length > 0) {
    throw new OperationError(
      "closure-rejected",
      `cannot fetch ${root}:\n  ${problems.join("\n  ")}`,
      {
        hint: "check --trusted-key and that the whole closure was pushed",
      },
    );
  }
  return referencesFirst(
    [...walk.found.values()].map((info) => ({ ...info, path: info.storePath })),
  );
}

/** The import's input closed under the fetch: `nix-store --import` stopped or was stopped. */
const importStopped = (): Error => new Error("nix-store --import stopped reading its input");

/**
 * Writes into `target` without ever ending it, honouring backpressure; fails once `target` is
 * closed (the import stopped, and its stream with it).
 */
function forwardTo(target: PassThrough): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      writeDrained(target, chunk, importStopped).then(() => done(), done);
    },
  });
}

export interface ImportResult {
  readonly paths: number;
  readonly imported: readonly StorePath[];
  readonly alreadyValid: number;
}

/**
 * Fetches `root` and its closure into the local Nix store with `nix-store --import`; `signal`
 * (an interrupt) stops it, and the import has twice the time a read of the closure's NAR bytes
 * may take (readDeadlineMs): a Nix that stops (a lock another Nix holds) does not hold it for ever.
 */
export async function fetchAndImport(
  source: FetchSource,
  root: StorePath,
  nix: NixOptions = {},
  signal?: AbortSignal,
): Promise<ImportResult> {
  const closure = await resolveClosure(source, root);
  const valid = await validPaths(
    closure.map((i) => i.storePath),
    nix,
  );
  const todo = closure.filter((i) => !valid.has(i.storePath));
  source.onEvent?.({ type: "closure", paths: closure.length, toFetch: todo.length });
  if (todo.length === 0) return { paths: closure.length, imported: [], alreadyValid: valid.size };

  // An interrupt that came while the closure was read stops here, before Nix is started.
  signal?.throwIfAborted();
  const exportStream = new PassThrough({ highWaterMark: 1 << 20 });
  const narBytes = todo.reduce((sum, i) => sum + i.narSize, 0);
  const seconds = (2 * readDeadlineMs(narBytes)) / 1000;
  const importing = importExport(exportStream, nix, {
    timeoutMs: testWait("NIXSHIP_IMPORT_TIMEOUT", seconds, seconds) * 1000,
    ...(signal === undefined ? {} : { signal }),
  });
  importing.catch(() => {}); // awaited below, by the end of the stream or after a failure
  try {
    for (const info of todo) {
      exportStream.write(exportPathStart());
      await streamVerifiedNar(source.store, info, forwardTo(exportStream));
      // Only now, with the hashes checked, does Nix get the metadata that makes the path valid.
      const deriver = info.deriver ? `${STORE_DIR}/${info.deriver}` : undefined;
      exportStream.write(exportPathEnd(info.storePath, info.references, deriver));
      source.onEvent?.({ type: "path-fetched", path: info.storePath, narSize: info.narSize });
    }
    exportStream.end(exportEnd());
  } catch (err) {
    // The import stopped first (its deadline, an interrupt, Nix's own failure), its stream
    // closed with it: its error is the cause. Otherwise the reading failed (a NAR not the one
    // signed), and the import fails because its stream is cut here: the reading's error is.
    const importEndedFirst = exportStream.destroyed;
    exportStream.destroy();
    const importFailure = await importing.then(
      () => undefined,
      (importErr: unknown) => importErr,
    );
    throw importEndedFirst && importFailure !== undefined ? importFailure : err;
  }
  await importing;
  return {
    paths: closure.length,
    imported: todo.map((i) => i.storePath),
    alreadyValid: valid.size,
  };
}

/**
 * Fetches `root` (its closure's signatures checked) and restores its tree into `dir`; `signal`
 * (an interrupt) stops it with nothing left under `dir` or beside it.
 */
export async function fetchAndRestore(
  source: FetchSource,
  root: StorePath,
  dir: string,
  signal?: AbortSignal,
): Promise<void> {
  const target = resolve(dir);
  requireRestorable(target);
  const closure = await resolveClosure(source, root);
  const info = closure.find((i) => i.storePath === root) as NarInfo;
  source.onEvent?.({ type: "closure", paths: closure.length, toFetch: 1 });
  const staging = join(
    dirname(target),
    `.${basename(target)}.nixship-fetch-${randomBytes(4).toString("hex")}`,
  );
  const nar = new PassThrough({ highWaterMark: 1 << 20 });
  const restoring = restoreNar(nar, staging, signal === undefined ? {} : { signal });
  // Whether the restore failed on its own, before this side cut the stream: then its error is
  // the cause; otherwise the stream's is, and the restore only saw the stream end early.
  let unpacking: unknown;
  restoring.catch((e: unknown) => {
    unpacking = e;
    // Nothing reads the stream any more: cut it, or the read would wait on it for good.
    nar.destroy();
  });
  try {
    await streamVerifiedNar(source.store, info, nar, signal === undefined ? {} : { signal });
    await restoring;
    await rename(staging, target);
  } catch (err) {
    const restoreFailedFirst = unpacking !== undefined;
    nar.destroy();
    await restoring.catch(() => {});
    await rm(staging, { recursive: true, force: true });
    if (err instanceof NarCheckError || !restoreFailedFirst) throw err;
    // The restore stopped first (and the stream was cut): a NAR that does not parse is not
    // the one the narinfo's signed NarHash describes; any other cause is the restore's own.
    if (unpacking instanceof InputError && unpacking.code === "bad-nar") {
      throw new NarCheckError({
        kind: "nar-mismatch",
        message: `${info.storePath}: ${info.url} is not the NAR its narinfo describes (${unpacking.message})`,
      });
    }
    throw unpacking;
  }
  source.onEvent?.({ type: "path-fetched", path: root, narSize: info.narSize });
}
