// The deployer's half of a push from a build host: the host stored the NARs and reported their
// narinfos unsigned (nar-report.ts); here each is checked against what the host's own Nix
// recorded for the path (NarHash, NarSize, references, deriver), and its NAR object is read
// back from the cache and hashed (FileHash and FileSize of the stored file, NarHash and NarSize
// of what it decompresses to): only what the cache's bytes prove is signed. A path the cache
// already has is never signed again from a report, and a narinfo is only ever put if absent, so
// a build host cannot replace what the fleet already trusts. Nothing is written for a report
// that lies.
import { OperationError } from "../errors.js";
import type { PathInfo } from "../nix/closure.js";
import type { SecretKey } from "../nix/keys.js";
import { formatNarInfo, type NarInfo, signNarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { narInfoKey } from "./layout.js";
import type { NarReport } from "./nar-report.js";
import { checkStoredNar, NarCheckError } from "./read.js";

/** Requests to the cache at once (HEADs, then narinfo puts). */
const CONCURRENCY = 16;

export interface CommitInput {
  readonly store: ObjectStore;
  readonly key: SecretKey;
  /** The build host, as messages name it. */
  readonly source: string;
  readonly report: NarReport;
  /** The closure as the build host's Nix records it (`nix path-info --recursive` there). */
  readonly closure: readonly PathInfo[];
}

export interface CommitSummary {
  readonly committed: readonly StorePath[];
  /** Paths of the closure the cache had already (reported as stored or not): never re-signed. */
  readonly alreadyPresent: number;
  readonly fileBytes: number;
  readonly narBytes: number;
}

/**
 * Checks the whole report first (every path of the closure either reported with a NAR that
 * matches the host's Nix or already in the cache; every NAR to sign read back from the cache
 * and hashed), then signs and puts the narinfos of the paths the cache lacked, each only after
 * the narinfos of its references, and only where none exists.
 */
export async function commitReportedNars(input: CommitInput): Promise<CommitSummary> {
  const { store, source, report } = input;
  const byPath = new Map(input.closure.map((p) => [p.path, p]));
  for (const nar of report.nars) checkAgainstNix(nar, byPath.get(nar.storePath), source);
  for (const path of report.present) {
    if (!byPath.has(path)) throw refused(source, path, "is not in the closure its Nix records");
  }
  // What the cache has already, whatever the report says of it: those are never signed anew.
  const inCache = new Set(
    (
      await mapLimit(input.closure, CONCURRENCY, async (p) =>
        (await store.head(narInfoKey(p.path))) === undefined ? [] : [p.path],
      )
    ).flat(),
  );
  const toSign = report.nars.filter((n) => !inCache.has(n.storePath));
  const signing = new Set(toSign.map((n) => n.storePath));
  const missing = input.closure.filter((p) => !inCache.has(p.path) && !signing.has(p.path));
  if (missing.length > 0) {
    throw refused(
      source,
      missing[0]?.path as StorePath,
      "was neither stored by it nor in the cache",
      {
        others: missing.length - 1,
      },
    );
  }
  await mapLimit(toSign, CONCURRENCY, async (nar) => {
    try {
      await checkStoredNar(store, nar);
    } catch (err) {
      if (err instanceof NarCheckError)
        throw refused(
          source,
          nar.storePath,
          `has a NAR in the cache that does not match its report: ${err.message}`,
        );
      throw err;
    }
  });
  await putInLayers(store, toSign, input.key);
  return {
    committed: toSign.map((n) => n.storePath),
    alreadyPresent: input.closure.length - toSign.length,
    fileBytes: toSign.reduce((a, n) => a + (n.fileSize ?? 0), 0),
    narBytes: toSign.reduce((a, n) => a + n.narSize, 0),
  };
}

/** The fingerprint's fields (and the deriver) must be what the host's Nix recorded. */
function checkAgainstNix(nar: NarInfo, nix: PathInfo | undefined, source: string): void {
  const path = nar.storePath;
  if (nix === undefined) throw refused(source, path, "is not in the closure its Nix records");
  if (!nar.narHash.equals(nix.narHash)) {
    throw refused(
      source,
      path,
      `was reported with NarHash ${nar.narHash.format("nix32")}, but its Nix records ${nix.narHash.format("nix32")}`,
    );
  }
  if (nar.narSize !== nix.narSize) {
    throw refused(
      source,
      path,
      `was reported with NarSize ${nar.narSize}, but its Nix records ${nix.narSize}`,
    );
  }
  const refs = (r: readonly string[]) => [...new Set(r)].sort().join(" ");
  if (refs(nar.references) !== refs(nix.references)) {
    throw refused(source, path, "was reported with other references than its Nix records");
  }
  if ((nar.deriver ?? "") !== (nix.deriver ?? "") || (nar.ca ?? "") !== (nix.ca ?? "")) {
    throw refused(source, path, "was reported with another deriver or CA than its Nix records");
  }
}

/**
 * Puts the signed narinfos a layer at a time: a path's layer comes after its references',
 * and a layer starts once the puts of the one before completed (committed, on any store).
 */
async function putInLayers(
  store: ObjectStore,
  nars: readonly NarInfo[],
  key: SecretKey,
): Promise<void> {
  const byPath = new Map(nars.map((n) => [n.storePath, n]));
  const depth = new Map<StorePath, number>();
  const depthOf = (nar: NarInfo, seen: Set<StorePath>): number => {
    const known = depth.get(nar.storePath);
    if (known !== undefined) return known;
    if (seen.has(nar.storePath)) {
      throw new OperationError("closure-cycle", `the references of ${nar.storePath} form a cycle`);
    }
    seen.add(nar.storePath);
    let d = 0;
    for (const ref of nar.references) {
      const r = byPath.get(ref);
      if (r !== undefined && ref !== nar.storePath) d = Math.max(d, depthOf(r, seen) + 1);
    }
    depth.set(nar.storePath, d);
    return d;
  };
  const layers = new Map<number, NarInfo[]>();
  for (const nar of nars) {
    const d = depthOf(nar, new Set());
    layers.set(d, [...(layers.get(d) ?? []), nar]);
  }
  for (const d of [...layers.keys()].sort((a, b) => a - b)) {
    const layer = layers.get(d) ?? [];
    await mapLimit(layer, CONCURRENCY, async (nar) => {
      const signed = signNarInfo(nar, key);
      // If absent: a narinfo another writer put meanwhile stays as it is.
      await store.put(narInfoKey(nar.storePath), Buffer.from(formatNarInfo(signed)), {
        contentType: "text/x-nix-narinfo",
        condition: { ifAbsent: true },
      });
    });
  }
}

function refused(
  source: string,
  path: StorePath,
  why: string,
  more: { others?: number } = {},
): OperationError {
  const others = more.others ? ` (and ${more.others} other paths)` : "";
  return new OperationError(
    "build-host-refused",
    `refused the push from ${source}: ${path} ${why}${others}; no narinfo was written`,
    {
      hint: `check ${source} (its nixship and its store); the deploy can also build there without it, and copy the closure back`,
    },
  );
}
