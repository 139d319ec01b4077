// The deployer's half of a push from a build host: the host stored the NARs and reported their
// narinfos unsigned (nar-report.ts); here each is checked against what the host's own Nix
// recorded for the path (NarHash, NarSize, references, deriver) and its NAR object against
// its FileSize, and only when every path checks out are the narinfos signed with the
// deployer's key and put, references first: nothing is written for a report that lies.
import { OperationError } from "../errors.js";
import type { PathInfo } from "../nix/closure.js";
import type { SecretKey } from "../nix/keys.js";
import { formatNarInfo, type NarInfo, signNarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { narInfoKey } from "./layout.js";
import type { NarReport } from "./nar-report.js";

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
  readonly alreadyPresent: number;
  readonly fileBytes: number;
  readonly narBytes: number;
}

/**
 * Checks the whole report first (every path of the closure either reported with a NAR that
 * matches the host's Nix or already in the cache; every NAR object there with its FileSize),
 * then signs and puts the narinfos, each only after the narinfos of its references.
 */
export async function commitReportedNars(input: CommitInput): Promise<CommitSummary> {
  const { store, source, report } = input;
  const byPath = new Map(input.closure.map((p) => [p.path, p]));
  const reported = new Map(report.nars.map((n) => [n.storePath, n]));
  for (const nar of report.nars) checkAgainstNix(nar, byPath.get(nar.storePath), source);
  for (const path of report.present) {
    if (!byPath.has(path)) throw refused(source, path, "is not in the closure its Nix records");
  }
  // Paths it says the cache had, and any it did not mention: the cache must have them.
  const notReported = input.closure.filter((p) => !reported.has(p.path));
  const missing = (
    await mapLimit(notReported, CONCURRENCY, async (p) =>
      (await store.head(narInfoKey(p.path))) === undefined ? [p.path] : [],
    )
  ).flat();
  if (missing.length > 0) {
    throw refused(source, missing[0] as StorePath, "was neither stored by it nor in the cache", {
      others: missing.length - 1,
    });
  }
  await mapLimit(report.nars, CONCURRENCY, async (nar) => {
    const object = await store.head(nar.url);
    if (object === undefined) throw refused(source, nar.storePath, `has no NAR at ${nar.url}`);
    if (object.size !== nar.fileSize) {
      throw refused(
        source,
        nar.storePath,
        `has a NAR of ${object.size} bytes at ${nar.url}, not the ${nar.fileSize} it reported`,
      );
    }
  });
  await putInLayers(store, report.nars, input.key);
  return {
    committed: report.nars.map((n) => n.storePath),
    alreadyPresent: input.closure.length - report.nars.length,
    fileBytes: report.nars.reduce((a, n) => a + (n.fileSize ?? 0), 0),
    narBytes: report.nars.reduce((a, n) => a + n.narSize, 0),
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
      await store.put(narInfoKey(nar.storePath), Buffer.from(formatNarInfo(signed)), {
        contentType: "text/x-nix-narinfo",
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
